package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at link time: go build -ldflags "-X main.version=v1.2.3".
var version = ""

func (e *env) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the commit it was built from and the Go version",
		Action: func(c *cli.Context) error {
			v, commit := buildVersion()
			fmt.Fprintf(e.stdout, "dms %s\ncommit: %s\ngo:     %s %s/%s\n", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// buildVersion reads the version and VCS commit that the Go toolchain
// stamps into the binary (go build stamps them; go run does not).
func buildVersion() (ver, commit string) {
	ver, commit = version, "unknown (built without VCS information, e.g. by go run)"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return orDev(ver), commit
	}
	if ver == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		ver = info.Main.Version
	}
	var rev, modified, when string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		case "vcs.time":
			when = s.Value
		}
	}
	if rev != "" {
		commit = rev
		if when != "" {
			commit += " (" + when + ")"
		}
		if modified == "true" {
			commit += ", with uncommitted changes"
		}
	}
	return orDev(ver), commit
}

func orDev(v string) string {
	if v == "" {
		return "dev"
	}
	return v
}
