module nur.dev/examples/go-wc

go 1.24
