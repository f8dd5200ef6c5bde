#!/bin/bash
# setup.sh FIX [PART...]: prepares, untraced and once per evaluation, the
# inputs the corpus workloads start from, under the directory FIX: data
# files (data), a Go module (go), a C project (c), Java classes (java),
# Node.js sources (node), Python sources (py) and a venv (venv), a git
# repository with history (git), a Debian package (deb), a Rust crate
# (rust), a PostgreSQL cluster (pg), C headers as text, 14 MB, and 4 MB
# half gzip'd (text), a photo-sized PNG (img), a raw video clip (media), a
# Python package with a C extension (cext); every part when none is
# named. It needs no network. A tool that is missing leaves its part out
# (the harness skips the workloads that need it and says so).
set -euo pipefail
fix=$1
shift
parts=" ${*:-data go c java node py venv git deb rust pg text img media cext} "
mkdir -p "$fix"
chmod 755 "$fix"
cd "$fix"
have() { command -v "$1" >/dev/null 2>&1; }
want() { [[ $parts == *" $1 "* ]]; }

# data: a CSV of 60k sales rows and a text corpus
if want data; then
mkdir -p data
awk 'BEGIN { srand(7); for (i = 0; i < 60000; i++) printf "%d,%s,%d,%.2f\n", i, substr("abcdefghij", i % 10 + 1, 1) "-shop", int(rand() * 50), rand() * 100 }' > data/sales.csv
for i in $(seq 1 40); do
	awk -v n=$i 'BEGIN { srand(n); for (j = 0; j < 400; j++) printf "%s %d level=%s user=u%d took %dms\n", "2026-01-01T00:00:00Z", j, (rand() < 0.1 ? "ERROR" : "INFO"), int(rand() * 90), int(rand() * 500) }' > data/log$i.txt
done
fi

# go: a module with a library, its tests and a command
if want go; then
mkdir -p gomod/stats gomod/cmd/report
cat > gomod/go.mod <<'G'
module corpus.example/report

go 1.22
G
cat > gomod/stats/stats.go <<'G'
// Package stats summarises numbers.
package stats

import "sort"

// Summary is the count, mean and median of a sample.
type Summary struct {
	N            int
	Mean, Median float64
}

// Of summarises xs.
func Of(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Summary{N: len(s), Mean: sum / float64(len(s)), Median: s[len(s)/2]}
}
G
cat > gomod/stats/stats_test.go <<'G'
package stats

import "testing"

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		mean float64
	}{{nil, 0}, {[]float64{1, 2, 3}, 2}, {[]float64{4}, 4}} {
		if got := Of(tc.in).Mean; got != tc.mean {
			t.Errorf("Of(%v).Mean = %v, want %v", tc.in, got, tc.mean)
		}
	}
}

func BenchmarkOf(b *testing.B) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(i % 37)
	}
	for i := 0; i < b.N; i++ {
		Of(xs)
	}
}
G
cat > gomod/cmd/report/main.go <<'G'
// Command report serves a summary of numbers over HTTP and prints it.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"corpus.example/report/stats"
)

var build = "dev"

func main() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(stats.Of([]float64{1, 2, 3, 4}))
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	var s stats.Summary
	json.NewDecoder(resp.Body).Decode(&s)
	fmt.Println(build, s.N, s.Mean)
}
G
fi

# C: a project of 16 files with a Makefile and a test target
if want c; then
mkdir -p cproj/src
for i in $(seq 1 16); do
	cat > cproj/src/m$i.c <<C
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct item$i { char name[32]; double v; };
static int cmp$i(const void *a, const void *b) { const struct item$i *x = a, *y = b; return (x->v > y->v) - (x->v < y->v); }
double work$i(int n) {
	struct item$i *it = calloc(n, sizeof *it);
	for (int k = 0; k < n; k++) { snprintf(it[k].name, sizeof it[k].name, "item-%d", k); it[k].v = (k * 7919 % 1000) / 10.0; }
	qsort(it, n, sizeof *it, cmp$i);
	double s = 0; for (int k = 0; k < n; k++) s += it[k].v * strlen(it[k].name);
	free(it); return s;
}
C
done
{
	echo '#include <stdio.h>'
	for i in $(seq 1 16); do echo "double work$i(int);"; done
	echo 'int main(void) { double s = 0;'
	for i in $(seq 1 16); do echo "s += work$i(2000);"; done
	echo 'printf("%.1f\n", s); return s > 0 ? 0 : 1; }'
} > cproj/src/main.c
printf 'CFLAGS = -O2 -Wall\nSRCS = $(wildcard src/*.c)\nOBJS = $(SRCS:.c=.o)\n\nall: app\n\napp: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\ncheck: app\n\t./app > out.txt && test -s out.txt\n\nclean:\n\trm -f app out.txt $(OBJS)\n' > cproj/Makefile

# C++
cat > cxx.cpp <<'C'
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
	std::map<std::string, int> counts;
	std::vector<int> v;
	for (int i = 0; i < 200000; i++) v.push_back((i * 7919) % 10007);
	std::sort(v.begin(), v.end());
	for (int x : v) counts[std::to_string(x % 97)]++;
	std::cout << counts.size() << std::endl;
}
C
fi

# Java: a threaded computation, an HTTP service and a small library
if want java; then
mkdir -p java/src/corpus
cat > java/src/corpus/Compute.java <<'J'
package corpus;

import java.util.concurrent.*;

public class Compute {
	public static void main(String[] args) throws Exception {
		ExecutorService ex = Executors.newFixedThreadPool(2);
		Future<Long> a = ex.submit(() -> primes(0, 150_000)), b = ex.submit(() -> primes(150_000, 300_000));
		System.out.println(a.get() + b.get());
		ex.shutdown();
	}
	static long primes(int from, int to) {
		long n = 0;
		for (int i = Math.max(2, from); i < to; i++) {
			boolean p = true;
			for (int d = 2; (long) d * d <= i; d++) if (i % d == 0) { p = false; break; }
			if (p) n++;
		}
		return n;
	}
}
J
cat > java/src/corpus/Service.java <<'J'
package corpus;

import com.sun.net.httpserver.HttpServer;
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;

public class Service {
	public static void main(String[] args) throws Exception {
		HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
		s.createContext("/", x -> {
			byte[] b = ("hello " + x.getRequestURI()).getBytes(StandardCharsets.UTF_8);
			x.sendResponseHeaders(200, b.length);
			try (OutputStream o = x.getResponseBody()) { o.write(b); }
		});
		s.start();
		int port = s.getAddress().getPort();
		int ok = 0;
		for (int i = 0; i < 200; i++) {
			HttpURLConnection c = (HttpURLConnection) new URL("http://127.0.0.1:" + port + "/item/" + i).openConnection();
			try (InputStream in = c.getInputStream()) { in.readAllBytes(); ok++; }
		}
		s.stop(0);
		System.out.println(ok);
	}
}
J
cat > java/src/corpus/Words.java <<'J'
package corpus;

import java.nio.file.*;
import java.util.*;
import java.util.stream.*;

public class Words {
	public static void main(String[] args) throws Exception {
		Map<String, Long> m;
		try (Stream<Path> files = Files.list(Paths.get(args[0]))) {
			m = files.flatMap(p -> { try { return Files.lines(p); } catch (Exception e) { throw new RuntimeException(e); } })
				.flatMap(l -> Arrays.stream(l.split(" "))).collect(Collectors.groupingBy(w -> w, Collectors.counting()));
		}
		System.out.println(m.size());
	}
}
J
if have javac; then
	javac -d java/classes java/src/corpus/*.java
fi
fi

# Node.js: a server, a script and a local package to install
if want node; then
mkdir -p node/lib-a node/app
cat > node/lib-a/package.json <<'N'
{"name": "lib-a", "version": "1.0.0", "main": "index.js", "license": "MIT"}
N
cat > node/lib-a/index.js <<'N'
exports.sum = (xs) => xs.reduce((a, b) => a + b, 0);
N
cat > node/app/package.json <<'N'
{"name": "app", "version": "1.0.0", "private": true, "dependencies": {"lib-a": "file:../lib-a"}, "scripts": {"test": "node --test"}}
N
cat > node/app/index.js <<'N'
const { sum } = require('lib-a');
console.log(sum([1, 2, 3]));
N
cat > node/app/sum.test.js <<'N'
const test = require('node:test');
const assert = require('node:assert');
const { sum } = require('../lib-a');
test('sum', () => { assert.strictEqual(sum([1, 2, 3]), 6); });
test('empty', () => { assert.strictEqual(sum([]), 0); });
N
cat > node/server.js <<'N'
const http = require('http');
const srv = http.createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ path: req.url, t: Date.now() })); });
srv.listen(0, '127.0.0.1', async () => {
	const port = srv.address().port;
	let ok = 0;
	for (let i = 0; i < 300; i++) {
		await new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/item/' + i }, (r) => { r.resume(); r.on('end', () => { ok++; resolve(); }); }).on('error', reject));
	}
	console.log(ok);
	srv.close();
});
N
cat > node/etl.js <<'N'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => l.split(','));
const by = {};
for (const [, shop, qty, price] of rows) by[shop] = (by[shop] || 0) + Number(qty) * Number(price);
fs.writeFileSync(process.argv[3], JSON.stringify(by, null, 1));
N
fi

# Python: a package to install from local files, a data job, tests
if want py || want venv; then
mkdir -p py/pkg/src/corpusstats py/tests
cat > py/pkg/pyproject.toml <<'P'
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "corpusstats"
version = "1.0"
P
cat > py/pkg/src/corpusstats/__init__.py <<'P'
def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0
P
cat > py/tests/test_stats.py <<'P'
import json
import unittest


class TestJSON(unittest.TestCase):
    def test_roundtrip(self):
        d = {"a": [1, 2, 3], "b": {"c": "d"}}
        self.assertEqual(json.loads(json.dumps(d)), d)

    def test_sorted(self):
        self.assertEqual(sorted([3, 1, 2]), [1, 2, 3])
P
cat > py/etl.py <<'P'
import csv
import json
import statistics
import sys
from collections import defaultdict

by = defaultdict(list)
with open(sys.argv[1]) as f:
    for row in csv.reader(f):
        by[row[1]].append(int(row[2]) * float(row[3]))
out = {k: {"n": len(v), "mean": statistics.mean(v), "p50": statistics.median(v)} for k, v in by.items()}
json.dump(out, open(sys.argv[2], "w"), indent=1)
P
fi
if want venv && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
	[ -x py/venv/bin/pip ] || /usr/bin/python3 -m venv py/venv
	# a wheel of the package, made by hand (a venv has no wheel builder)
	/usr/bin/python3 - py <<'P'
import base64, hashlib, sys, zipfile
d = sys.argv[1]
files = {
    "corpusstats/__init__.py": open(d + "/pkg/src/corpusstats/__init__.py", "rb").read(),
    "corpusstats-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: corpusstats\nVersion: 1.0\n",
    "corpusstats-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: corpus\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={h},{len(data)}\n"
record += "corpusstats-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(d + "/corpusstats-1.0-py3-none-any.whl", "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("corpusstats-1.0.dist-info/RECORD", record)
P
fi

# git: a repository with history to clone
if want git && have git; then
	rm -rf git/origin
	mkdir -p git/origin
	(
		cd git/origin
		export GIT_AUTHOR_NAME=corpus GIT_AUTHOR_EMAIL=corpus@example.com GIT_COMMITTER_NAME=corpus GIT_COMMITTER_EMAIL=corpus@example.com
		git init -q -b main .
		for i in $(seq 1 30); do
			seq 1 $((i * 40)) > "file$((i % 7)).txt"
			git add -A && git commit -q -m "change $i"
		done
	)
fi

# a Debian package built here
if want deb && have dpkg-deb; then
	rm -rf deb
	mkdir -p deb/root/DEBIAN deb/root/usr/share/corpus-tool deb/root/usr/bin
	printf 'Package: corpus-tool\nVersion: 1.0\nArchitecture: all\nMaintainer: corpus <corpus@example.com>\nDescription: a package of the benign corpus\n' > deb/root/DEBIAN/control
	for i in $(seq 1 50); do seq 1 $((i * 30)) > deb/root/usr/share/corpus-tool/data$i.txt; done
	printf '#!/bin/sh\necho corpus-tool\n' > deb/root/usr/bin/corpus-tool
	chmod 755 deb/root/usr/bin/corpus-tool
	dpkg-deb --root-owner-group -b deb/root deb/corpus-tool_1.0_all.deb >/dev/null
fi

# Rust: a crate with no dependencies
if want rust; then
mkdir -p rust/src
printf '[package]\nname = "corpus"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' > rust/Cargo.toml
cat > rust/src/main.rs <<'R'
use std::collections::HashMap;
fn main() {
    let mut m: HashMap<u64, u64> = HashMap::new();
    for i in 0..100_000u64 { *m.entry(i % 97).or_insert(0) += i; }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    println!("{}", v.len());
}
R
fi

# text: the kernel's C headers, repeated to 12 MB or more (14 MB), and 4 MB
# of 2 MB of those and 2 MB of their gzip (compressible, then not), for
# compressors
if want text && [ ! -s text/mixed.bin ]; then
	mkdir -p text
	find /usr/include/linux -name '*.h' -type f -exec cat {} + > text/one.txt
	: > text/headers.txt
	while [ "$(stat -c %s text/headers.txt)" -lt 12000000 ]; do cat text/one.txt >> text/headers.txt; done
	rm -f text/one.txt
	gzip -9 -c text/headers.txt > text/headers.gz
	{ head -c 2000000 text/headers.txt; head -c 2000000 text/headers.gz; } > text/mixed.bin
	rm -f text/headers.gz
fi

# img: a 1600x1200 PNG (a plasma fractal: photo-like, incompressible)
if want img && have /usr/bin/convert && [ ! -s img/photo.png ]; then
	mkdir -p img
	/usr/bin/convert -seed 3 -size 1600x1200 plasma:fractal img/photo.png
fi

# media: 8 s of a 640x360 test pattern, raw (y4m)
if want media && have ffmpeg && [ ! -s media/clip.y4m ]; then
	mkdir -p media
	ffmpeg -loglevel error -y -f lavfi -i testsrc=duration=8:size=640x360:rate=25 -pix_fmt yuv420p media/clip.y4m
fi

# cext: a Python package with a C extension, built by pip at run time
if want cext; then
mkdir -p cext/fastsum
cat > cext/fastsum/_fast.c <<'C'
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *total(PyObject *self, PyObject *args)
{
	long n, s = 0;
	if (!PyArg_ParseTuple(args, "l", &n))
		return NULL;
	for (long i = 0; i < n; i++)
		s += i % 7;
	return PyLong_FromLong(s);
}
static PyMethodDef methods[] = {{"total", total, METH_VARARGS, "sum of i % 7 below n"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, methods};
PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&mod); }
C
echo 'from ._fast import total' > cext/fastsum/__init__.py
printf 'from setuptools import setup, Extension\nsetup(name="fastsum", version="1.0", packages=["fastsum"],\n      ext_modules=[Extension("fastsum._fast", ["fastsum/_fast.c"])])\n' > cext/setup.py
fi

# PostgreSQL: a cluster owned by the postgres user
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if want pg && [ -n "$pgbin" ] && id postgres >/dev/null 2>&1 && [ ! -f pg/data/PG_VERSION ]; then
	mkdir -p pg
	chown postgres pg
	start-stop-daemon --start --chuid postgres --pidfile "$fix/pg/none.pid" --startas "$pgbin/initdb" -- -A trust -U postgres -D "$fix/pg/data" >/dev/null
fi
if want pg; then echo "$pgbin" > pgbin; fi
