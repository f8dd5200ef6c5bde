package bpf

// The BPF objects and their Go bindings are generated and committed, so a
// build needs no clang; `make generate` runs these with clang from apt.
//go:generate ./gen_sysargs.sh
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type cg_state -type sysmeta -type dec -type item_kind -type clone_item vigil syscalls.bpf.c -- -I.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 floor floor.bpf.c -- -I.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type guard_rule -type guard_flags -type guard_dns_key -type guard_deny_key guard connect.bpf.c -- -I.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 tracertest tracer_test.bpf.c -- -I.
