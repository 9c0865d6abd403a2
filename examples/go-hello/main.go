// go-hello: a Nur function in Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
//
// It answers like the Rust echo example: the first input chunk comes back
// at once as an HTTP/1.1 200 response whose body is the chunk, and the
// connection ends. It writes "go-hello: N bytes" to stdout, which the
// worker's WASI fd_write puts in the function's log.
//
// The Nur ABI's imports come from module "nur"; the Go runtime itself
// imports from wasi_snapshot_preview1 (clocks, random, fd_write...), which
// the worker provides. As a reactor (c-shared) the module exports
// _initialize, which the worker calls once per instance before poll_stream.
package main

import (
	"fmt"
	"strconv"
	"unsafe"
)

//go:wasmimport nur nur_send
func nurSend(ptr unsafe.Pointer, len uint32)

//go:wasmimport nur nur_end
func nurEnd()

// buffer holds the input chunk the worker copies in: alloc hands out its
// address, kept alive by this global.
var buffer []byte

//go:wasmexport alloc
func alloc(n uint32) uint32 {
	if uint32(cap(buffer)) < n || n == 0 {
		buffer = make([]byte, max(n, 1))
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buffer))))
}

func send(b []byte) {
	if len(b) > 0 {
		nurSend(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
	}
}

//go:wasmexport poll_stream
func pollStream(ptr, n uint32) {
	var body []byte
	if n > 0 {
		body = buffer[:n]
	}
	fmt.Printf("go-hello: %d bytes\n", len(body))
	send([]byte("HTTP/1.1 200 OK\r\ncontent-length: " + strconv.Itoa(len(body)) + "\r\n\r\n"))
	send(body)
	nurEnd()
}

func main() {}
