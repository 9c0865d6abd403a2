package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// cmdStart starts `up` in the background (own session, logs to
// DIR/logs/testenv.log) unless one is already running, and returns once
// everything answers. Running it twice is harmless.
func cmdStart(args []string) int {
	c := parseFlags("start", args)
	if readPid(c) != 0 && fileExists(c.path("ready")) {
		fmt.Printf("nur-testenv: already running (%s)\n", c.path("env"))
		return 0
	}
	if pid := readPid(c); pid != 0 {
		// A previous start is still coming up: wait for it.
		return waitReady(c, nil, time.Now())
	}
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		fatalf("%v", err)
	}
	_ = os.Remove(c.path("ready"))
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	lf, err := os.Create(c.path("logs", "testenv.log"))
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(self, append([]string{"up"}, args...)...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	lf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	return waitReady(c, exited, start)
}

func waitReady(c *config, exited <-chan struct{}, start time.Time) int {
	deadline := time.Now().Add(c.readyTimeout)
	for time.Now().Before(deadline) {
		if fileExists(c.path("ready")) && readPid(c) != 0 {
			fmt.Printf("nur-testenv: ready in %s; load %s (set -a; . %s; set +a)\n",
				time.Since(start).Round(100*time.Millisecond), c.path("env"), c.path("env"))
			return 0
		}
		gone := false
		if exited != nil {
			select {
			case <-exited:
				gone = true
			default:
			}
		} else if readPid(c) == 0 {
			gone = true
		}
		if gone {
			fmt.Fprintf(os.Stderr, "nur-testenv: failed to start; last lines of %s:\n", c.path("logs", "testenv.log"))
			tail(c.path("logs", "testenv.log"), 40)
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "nur-testenv: not ready after %s; last lines of %s:\n", c.readyTimeout, c.path("logs", "testenv.log"))
	tail(c.path("logs", "testenv.log"), 40)
	return 1
}
