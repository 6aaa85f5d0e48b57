package main

import (
	"fmt"
	"os"
	"testing"
)

// envTestRole turns a re-executed test binary into one process of a multi-process test
// instead of a test run. The NAT test (nat_test.go) starts the server and each client
// inside its own network namespace with `ip netns exec NS <this binary>`: a goroutine
// cannot live in another network namespace than its process, so every host of the
// simulated network must be a process of its own.
const envTestRole = "SWITCHBOARD_TEST_ROLE"

// TestMain runs the tests, unless envTestRole names a role: then this process is that
// role and exits with its status without running any test.
func TestMain(m *testing.M) {
	if role := os.Getenv(envTestRole); role != "" {
		os.Exit(runTestRole(role))
	}
	os.Exit(m.Run())
}

// runTestRole dispatches a re-executed test binary to its role; unknown roles exit 2.
func runTestRole(role string) int {
	switch role {
	case "nat-server":
		return natServerRole()
	case "nat-client":
		return natClientRole()
	case "cluster-node":
		return clusterNodeRole() // cluster_proc_test.go
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown role\n", envTestRole, role)
		return 2
	}
}
