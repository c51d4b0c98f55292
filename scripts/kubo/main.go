// Command ipfs is Kubo v0.43.1 built from the Go module proxy. It is a wrapper module because `go install` of
// Kubo's own command refuses: Kubo's go.mod replaces go-libp2p with a fork, which only a main module may do.
package main

import (
	"os"

	"github.com/ipfs/kubo/cmd/ipfs/kubo"
)

func main() {
	os.Exit(kubo.Start(kubo.BuildDefaultEnv))
}
