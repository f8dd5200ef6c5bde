#!/bin/bash
# php-report: an entry point that execs a PHP script (read from standard
# input): word counts of 14 MB of C headers, then 5 s of arithmetic (a
# report job's aggregation). At the end PHP is the container's only
# process.
set -euo pipefail
exec php -- "$FIX/text/headers.txt" <<'P'
<?php
$h = [];
$f = fopen($argv[1], "r");
while (($l = fgets($f)) !== false) {
	foreach (preg_split('/\W+/', $l, -1, PREG_SPLIT_NO_EMPTY) as $w) { $h[$w] = ($h[$w] ?? 0) + 1; }
}
arsort($h);
$t = microtime(true); $s = 0;
while (microtime(true) - $t < 5) { for ($i = 0; $i < 100000; $i++) { $s = ($s * 31 + $i) % 1000003; } }
echo count($h), " ", array_key_first($h), " ", $s, "\n";
P
