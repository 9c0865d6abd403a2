// go-wc: a WASI command in plain Go (GOOS=wasip1 GOARCH=wasm), no Nur ABI.
//
// The worker runs main once per connection: stdin is what the client
// sends, stdout goes back to it, stderr is the function's log. Every line
// is answered with its count of words as soon as it arrives, so a client
// can talk to it line by line; at EOF the totals follow.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	lines, words := 0, 0
	for in.Scan() {
		n := len(strings.Fields(in.Text()))
		lines++
		words += n
		// Unbuffered: each answer is one write, sent as it is made.
		fmt.Printf("%d words\n", n)
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "go-wc: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("total: %d lines, %d words\n", lines, words)
	fmt.Fprintf(os.Stderr, "go-wc: %d lines\n", lines)
}
