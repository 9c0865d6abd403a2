module nur.dev/examples/go-hello

go 1.24
