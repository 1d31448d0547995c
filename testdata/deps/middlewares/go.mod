module plugind.local/lib

go 1.22

require github.com/urfave/negroni/v3 v3.1.2
