#!/bin/bash
# perl_report: a Perl report over 40 log files: errors per user, slowest
# requests, a formatted summary.
set -euo pipefail
perl -ne '
	if (/level=(\w+) user=(\w+) took (\d+)ms/) { $n{$1}++; $e{$2}++ if $1 eq "ERROR"; push @t, $3 }
	END {
		@t = sort { $b <=> $a } @t;
		printf "%s=%d ", $_, $n{$_} for sort keys %n;
		printf "\nslowest %s\n", join(",", @t[0..4]);
		my @top = (sort { $e{$b} <=> $e{$a} } keys %e)[0..2];
		print "top errors: @top\n";
	}' "$FIX"/data/log*.txt
