package main

import (
	"fmt"
	"strings"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/urfave/cli/v2"
)

// jobCommands: job (submit, list, status, logs, cancel, bids), allocations
// and demo.
func (e *env) jobCommands() []*cli.Command {
	return []*cli.Command{e.jobCommand(), e.allocationsCommand(), e.demoCommand()}
}

func (e *env) jobCommand() *cli.Command {
	subs := []*cli.Command{
		e.jobSubmitCommand(), e.jobListCommand(), e.jobIDCommand("status", "show a job: state, provider, result and each step", e.jobStatus),
		e.jobIDCommand("logs", "print a job's output, its stdout to stdout and its stderr to stderr; -f follows a running job", e.jobLogs),
		e.jobGetCommand(), e.jobReceiptCommand(),
		e.jobIDCommand("cancel", "stop a job: a running one is stopped on its provider, one still bidding is dropped", e.jobCancel),
		e.jobIDCommand("bids", "show the bids for a job: those received as its requester, those placed as a provider", e.jobBids),
	}
	return e.commandGroup("job", "submit jobs to the mesh from the node running on --home, and follow them",
		"A job is a WebAssembly (WASI) module, a container image or a host command, with input\n"+
			"files in and output files back. The node running on --home (dms run) puts each\n"+
			"job's needs to the mesh, takes the best bid and follows the job to its end; these\n"+
			"commands talk to that node over its control socket. A job ID may be shortened to any\n"+
			"unique prefix of 4 characters or more. An ID this node has no job for exits 2.",
		subs)
}

// commandGroup is a command made of subcommands (dms job, dms testnet): it
// gives each subcommand the global flags and usage-error handling that the
// app gives top-level commands, and answers an unknown subcommand with the
// list of known ones (exit 2).
func (e *env) commandGroup(name, usage, description string, subs []*cli.Command) *cli.Command {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.Name
		s.Flags = append(s.Flags, globalFlags(false)...)
		s.OnUsageError = e.onUsage
		if s.Before == nil {
			s.Before = e.before
		}
		s.HideHelpCommand = true
	}
	return &cli.Command{
		Name: name, Usage: usage, Description: description, Subcommands: subs,
		// The group's own check: the subcommand and its arguments follow,
		// so the app's "flags only" check must not run here.
		Before: func(c *cli.Context) error {
			e.cmdPath = c.Command.HelpName
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown %s command %q; %s commands: %s", name, c.Args().First(), name, strings.Join(names, ", "))
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

// onUsage turns urfave/cli's parse errors into usage errors (exit 2) for
// the commands the app does not set up itself.
func (e *env) onUsage(c *cli.Context, err error, _ bool) error {
	e.cmdPath = c.Command.HelpName
	return &usageError{msg: rewriteFlagError(err.Error()), err: err}
}

// argsBefore is the Before of a job command: it applies flags written
// after the arguments (the flag package stops at the first argument; users
// write dms job status ID --json), checks the number of arguments and sets
// the log level.
func (e *env) argsBefore(minArgs, maxArgs int, what string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		e.cmdPath = c.Command.HelpName
		n := c.NArg()
		if maxArgs >= 0 {
			args, err := lateFlags(c)
			if err != nil {
				return err
			}
			n = len(args)
			if n > maxArgs {
				return usagef("unexpected argument %q: %s takes %s", args[maxArgs], e.cmdPath, what)
			}
		}
		if n < minArgs {
			return usagef("%s needs %s", e.cmdPath, what)
		}
		if v, ok := global(c, "log-level"); ok {
			l, err := home.ParseLogLevel(v)
			if err != nil {
				return badValue("log-level", v, err)
			}
			e.level.Set(l)
		}
		return nil
	}
}

// lateFlags sets the command's flags found among its arguments and
// returns the arguments left.
func lateFlags(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var flag cli.Flag
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					flag = f
				}
			}
		}
		if flag == nil {
			return nil, usagef("unknown flag --%s", name)
		}
		if _, isBool := flag.(*cli.BoolFlag); isBool && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, usagef("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if err := c.Set(flag.Names()[0], value); err != nil {
			return nil, badValue(name, value, err)
		}
	}
	return rest, nil
}

// jobIDCommand is a command on one job, named by its ID.
func (e *env) jobIDCommand(name, usage string, action func(*cli.Context, *api.Client, string) error) *cli.Command {
	cmd := &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: fmt.Sprintf("dms job %s [--json] ID", name),
		Before:    e.argsBefore(1, 1, "one job ID (dms job list shows them)"),
		Action: func(c *cli.Context) error {
			id := c.Args().First()
			return e.withClient(c, func(cl *api.Client) error { return action(c, cl, id) })
		},
	}
	switch name {
	case "status", "bids", "cancel":
		cmd.Flags = []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the reply as JSON"}}
	case "logs":
		cmd.UsageText = "dms job logs [-f] ID"
		cmd.Flags = []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow a running job: print its output as it comes, until it ends"}}
	}
	return cmd
}
