module example.com/pinned

go 1.21

require github.com/rs/xid v1.6.0
