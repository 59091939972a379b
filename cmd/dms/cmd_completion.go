package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// The shell scripts ask dms itself for the candidates: urfave/cli answers
// `dms ... --generate-bash-completion` with the commands and flags that fit
// there (EnableBashCompletion). They follow urfave/cli's own
// autocomplete/bash_autocomplete and zsh_autocomplete, and fish's does the
// same (cli's static ToFishCompletion recurses forever once the help
// command has been set up twice in one process, as tests do).
const bashCompletion = `# dms completion for bash: source <(dms completion bash)
_dms_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "${cur}" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _dms_complete dms
`

const zshCompletion = `#compdef dms
# dms completion for zsh: source <(dms completion zsh)
_dms() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [ "$funcstack[1]" = "_dms" ]; then _dms "$@"; else compdef _dms dms; fi
`

const fishCompletion = `# dms completion for fish: dms completion fish | source
function __dms_complete
    set -l args (commandline -opc)
    set -l cur (commandline -ct)
    if string match -q -- '-*' $cur
        $args $cur --generate-bash-completion 2>/dev/null
    else
        $args --generate-bash-completion 2>/dev/null
    end
end
complete -c dms -f -a '(__dms_complete)'
`

func (e *env) completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		UsageText: "dms completion bash|zsh|fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Load it in the running shell, or install it for every new one:\n" +
			"  bash: source <(dms completion bash)    or  dms completion bash > /etc/bash_completion.d/dms\n" +
			"  zsh:  source <(dms completion zsh)     or  dms completion zsh > \"${fpath[1]}/_dms\"\n" +
			"  fish: dms completion fish | source     or  dms completion fish > ~/.config/fish/completions/dms.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("dms completion takes one shell: bash, zsh or fish")
			}
			switch shell := c.Args().First(); shell {
			case "bash":
				fmt.Fprint(e.stdout, bashCompletion)
			case "zsh":
				fmt.Fprint(e.stdout, zshCompletion)
			case "fish":
				fmt.Fprint(e.stdout, fishCompletion)
			default:
				return usagef("unknown shell %q: want bash, zsh or fish", shell)
			}
			return nil
		},
	}
}

// setUsage gives every command a usage line of its own: urfave/cli's
// default prints "command [command options]" for a leaf command.
func setUsage(prefix string, cmds []*cli.Command) {
	for _, c := range cmds {
		path := prefix + " " + c.Name
		if c.UsageText == "" {
			switch {
			case len(c.Subcommands) > 0:
				c.UsageText = path + " COMMAND [options]"
			case c.ArgsUsage != "":
				c.UsageText = path + " [options] " + c.ArgsUsage
			default:
				c.UsageText = path + " [options]"
			}
		}
		setUsage(path, c.Subcommands)
	}
}

// commandNames lists cmds' names, for the unknown-command message.
func commandNames(cmds []*cli.Command) string {
	names := make([]string, 0, len(cmds))
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}
