package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/urfave/cli/v2"
)

// run is the whole program: main only passes os.Args and the terminal, so
// tests call run in-process. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runCtx(ctx, args, stdout, stderr)
}

// runCtx is run under ctx, which ends on SIGINT and SIGTERM in run; tests
// end a `dms run` by cancelling it.
func runCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := newEnv(stdout, stderr)
	err := classify(e.app().RunContext(ctx, args))
	if err != nil {
		fmt.Fprintf(stderr, "dms: %s\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", e.cmdPath)
		}
	}
	return exitCode(err)
}

// env is what the commands share: the terminal and the logger.
type env struct {
	stdout, stderr io.Writer
	level          *slog.LevelVar
	log            *slog.Logger
	cmdPath        string // "dms onboard", for the usage hint
}

func newEnv(stdout, stderr io.Writer) *env {
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return &env{stdout: stdout, stderr: stderr, level: level, log: log, cmdPath: "dms"}
}

// Global flags. They are accepted before the command (dms --home X onboard)
// and after it (dms onboard --home X); the copies after the command carry no
// environment variable, so flags beat DMS_* wherever they are written.
func globalFlags(withEnv bool) []cli.Flag {
	envs := func(v string) []string {
		if withEnv {
			return []string{v}
		}
		return nil
	}
	dir := defaultHome()
	return []cli.Flag{
		&cli.StringFlag{Name: "home", Usage: "the node's home directory: identity key, config, datastore", Value: dir, EnvVars: envs("DMS_HOME")},
		&cli.StringFlag{Name: "log-level", Usage: "least severe log level: debug, info, warn or error (default: the config file's log_level, else info)", EnvVars: envs("DMS_LOG_LEVEL")},
		&cli.StringFlag{Name: "remote", Usage: "manage the node whose remote control listener (dms run --control-listen) is at `HOST:PORT`, instead of the one on --home", EnvVars: envs("DMS_REMOTE")},
		&cli.StringFlag{Name: "token-file", Usage: "the token `FILE` for --remote, mode 0600 (default: HOME/" + api.TokenFile + ")", EnvVars: envs("DMS_TOKEN_FILE")},
		&cli.StringFlag{Name: "log-format", Usage: "how logs are written to stderr: text (key=value) or json (one object per line)", EnvVars: envs("DMS_LOG_FORMAT")},
	}
}

// defaultHome is --home's default, looked up once: every command carries
// the global flags, so the command line is built with some forty copies.
var defaultHome = sync.OnceValue(func() string {
	dir, err := home.DefaultDir()
	if err != nil {
		return "~/.dms"
	}
	return dir
})

// global returns a global flag's value: from the command line after the
// command, else before it (or its environment variable), else the default.
// An empty value (DMS_HOME= ) counts as unset.
func global(c *cli.Context, name string) (string, bool) {
	for _, cc := range c.Lineage() {
		// Not cc.IsSet: of a flag not given, it passes every name of every
		// flag of the command through a regexp (urfave/cli v2's FlagNames).
		if cc.Command != nil && slices.Contains(cc.LocalFlagNames(), name) && cc.String(name) != "" {
			return cc.String(name), true
		}
	}
	return c.String(name), false
}

func (e *env) app() *cli.App {
	onUsage := func(c *cli.Context, err error, _ bool) error {
		e.cmdPath = c.Command.HelpName
		return &usageError{msg: rewriteFlagError(err.Error()), err: err}
	}
	cmds := []*cli.Command{e.initCommand(), e.doctorCommand(), e.onboardCommand(), e.offboardCommand(), e.capabilityCommand(), e.benchmarkCommand(), e.versionCommand()}
	cmds = append(cmds, e.meshCommands()...)
	cmds = append(cmds, e.providersCommand())
	cmds = append(cmds, e.jobCommands()...)
	cmds = append(cmds, e.receiptCommand())
	cmds = append(cmds, e.benchCommand(), e.completionCommand())
	for _, c := range cmds {
		c.Flags = append(c.Flags, globalFlags(false)...)
		c.OnUsageError = onUsage
		if c.Before == nil { // a command group (dms job) checks its subcommands' arguments itself
			c.Before = e.before
		}
		// Groups keep "help" (dms job help); leaf commands have --help.
		c.HideHelpCommand = len(c.Subcommands) == 0
		withOwnHelp(c)
	}
	setUsage("dms", cmds)
	v, _ := buildVersion()
	return &cli.App{
		Name:  "dms",
		Usage: "the device management service: make this machine a node of a peer-to-peer compute mesh",
		Description: "dms measures this machine, offers part of it to the mesh (onboarding), bids for the jobs\n" +
			"other peers broadcast and runs the ones it wins; any node can submit jobs.\n" +
			"Try it on one machine: dms demo. Run a node: dms init, dms onboard, dms run.\n\n" +
			"Settings come from, highest first: flags, DMS_* environment variables, the config file\n" +
			"in the home, built-in defaults. Exit status: 0 done, 1 failed, 2 wrong usage.",
		UsageText:            "dms [--home DIR | --remote HOST:PORT [--token-file FILE]] [--log-level LEVEL] [--log-format text|json] COMMAND [options]",
		Flags:                globalFlags(true),
		Commands:             cmds,
		Version:              v,
		EnableBashCompletion: true,
		Writer:               e.stdout,
		ErrWriter:            e.stderr,
		OnUsageError:         onUsage,
		ExitErrHandler:       func(*cli.Context, error) {}, // run decides the exit status
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q; commands: %s", c.Args().First(), commandNames(c.App.Commands))
			}
			return cli.ShowAppHelp(c)
		},
	}
}

// before sets the log level from --log-level / DMS_LOG_LEVEL and refuses
// stray arguments to a command that takes none (no ArgsUsage, no
// subcommands).
func (e *env) before(c *cli.Context) error {
	e.cmdPath = c.Command.HelpName
	if c.Args().Present() && c.Command.ArgsUsage == "" && len(c.Command.Subcommands) == 0 {
		return usagef("unexpected argument %q: %s takes only flags", c.Args().First(), e.cmdPath)
	}
	if v, ok := global(c, "log-format"); ok {
		switch v {
		case "text":
		case "json":
			e.log = slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: e.level}))
		default:
			return badValue("log-format", v, fmt.Errorf("want text or json"))
		}
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

// How commands reach a home. There is one way for each kind of command:
// the offer commands (onboard, offboard, capability, benchmark) work with a
// node or without one (controller); the others need the running node
// (client). Both say the same things when the home is missing or has no
// node.

// openHome opens the home named by --home and its settings; the config
// file's log level applies unless a flag or DMS_LOG_LEVEL set one.
func (e *env) openHome(c *cli.Context) (home.Home, home.Settings, error) {
	dir, _ := global(c, "home")
	h, err := home.Open(dir)
	if err != nil {
		return home.Home{}, home.Settings{}, err
	}
	s, err := h.Settings(os.Getenv)
	if err != nil {
		return home.Home{}, home.Settings{}, err
	}
	if _, ok := global(c, "log-level"); !ok {
		e.level.Set(s.LogLevel)
	}
	return h, s, nil
}

// controller is the home's offer, through its running node if one runs.
func (e *env) controller(c *cli.Context) (api.Controller, error) {
	if _, ok := global(c, "remote"); ok {
		return e.client(c)
	}
	h, s, err := e.openHome(c)
	if err != nil {
		return nil, err
	}
	return api.Open(c.Context, h, s, e.log)
}

// client connects to the node running on --home. When none runs it says so
// and how to start one (exit 1); a directory that is no home yet gets the
// hint to run dms init instead (exit 2).
func (e *env) client(c *cli.Context) (*api.Client, error) {
	dir, _ := global(c, "home")
	if addr, ok := global(c, "remote"); ok {
		return remoteClient(c, addr, dir)
	}
	cl, err := api.Dial(c.Context, dir)
	if err == nil {
		return cl, nil
	}
	h, herr := home.Open(dir)
	if errors.Is(herr, home.ErrNotInitialized) {
		return nil, herr
	}
	if herr == nil && errors.Is(err, api.ErrNoNode) {
		// No node runs: a config that does not load is why dms run would
		// fail too, so say that first.
		if _, serr := h.Settings(os.Getenv); serr != nil {
			return nil, fmt.Errorf("%w, and its %w", err, serr)
		}
	}
	return nil, err
}

// withClient calls f with a client of the node running on --home.
func (e *env) withClient(c *cli.Context, f func(*api.Client) error) error {
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(cl)
}

// rewriteFlagError turns the flag package's wording into ours.
func rewriteFlagError(msg string) string {
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s", strings.TrimPrefix(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag --%s needs a value", strings.TrimPrefix(name, "-"))
	}
	// `invalid value "x" for flag -duration: parse error`
	return strings.Replace(msg, " for flag -", " for --", 1)
}

// closeController closes ctl, keeping the first error.
func closeController(ctl api.Controller, err *error) {
	*err = errors.Join(*err, ctl.Close())
}

// remoteClient connects to a node's remote control listener with the token
// of --token-file (default: the one in the home named by --home).
func remoteClient(c *cli.Context, addr, dir string) (*api.Client, error) {
	path, set := global(c, "token-file")
	if !set {
		path = filepath.Join(dir, api.TokenFile)
	}
	tok, err := api.LoadToken(path)
	if err != nil {
		return nil, &usageError{msg: "--token-file: " + err.Error(), err: err}
	}
	return api.DialRemote(c.Context, addr, tok)
}

// withOwnHelp gives each command group in c's tree a "help" subcommand of
// its own. urfave/cli otherwise adds one shared, package-level help command
// to every group and writes to it each time a group runs, which is a data
// race when two runs share a process (the tests run dms in-process, side
// by side). It says what urfave/cli's own would.
func withOwnHelp(c *cli.Command) {
	if len(c.Subcommands) == 0 {
		return
	}
	for _, sc := range c.Subcommands {
		withOwnHelp(sc)
	}
	if c.Command("help") != nil || c.HideHelp || c.HideHelpCommand {
		return
	}
	c.Subcommands = append(c.Subcommands, &cli.Command{
		Name: "help", Aliases: []string{"h"}, Usage: "Shows a list of commands or help for one command", ArgsUsage: "[command]",
		HideHelpCommand: true,
		Action: func(ctx *cli.Context) error {
			group := ctx.Lineage()[1]
			if name := ctx.Args().First(); name != "" {
				return cli.ShowCommandHelp(group, name)
			}
			return cli.ShowSubcommandHelp(group)
		},
	})
}
