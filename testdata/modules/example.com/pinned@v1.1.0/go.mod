module example.com/pinned

go 1.21

require github.com/rs/xid v1.7.0
