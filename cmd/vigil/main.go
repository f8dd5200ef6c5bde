// Command vigil is the node agent and its tools: one binary whose
// subcommands each live in a file of their own in this folder and register
// themselves in commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit status.
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "vigil: unknown command %q (commands: %s); see 'vigil --help'\n", os.Args[1], strings.Join(names(), ", "))
		os.Exit(2)
	}
	os.Exit(cmd.run(os.Args[2:]))
}

func names() []string {
	var out []string
	for n := range commands {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func usage(w *os.File) {
	fmt.Fprintln(w, "vigil: kernel-level security for containers (eBPF syscall tracing, detection, control, audit)")
	fmt.Fprintln(w, "\nUsage: vigil COMMAND [OPTIONS]\n\nCommands:")
	for _, n := range names() {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vigil COMMAND --help' for the options of one command.")
}

// fail prints a one-line error for the user and returns exit status 1.
func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "vigil: "+format+"\n", a...)
	return 1
}

// usageFunc prints a subcommand's --help: its text, then its flags.
func usageFunc(fs *flag.FlagSet, text string) func() {
	return func() {
		fmt.Fprint(fs.Output(), text)
		fs.PrintDefaults()
	}
}

// parseFlags parses a subcommand's flags. When done, the command returns
// the status: 0 after --help, 2 after a bad flag (the flag package said
// which).
func parseFlags(fs *flag.FlagSet, args []string) (status int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	return 0, false
}
