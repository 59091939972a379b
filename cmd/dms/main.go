// Command dms is the device management service: it makes this machine a node
// of a peer-to-peer compute mesh. See README.md, or run dms --help.
package main

import "os"

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }
