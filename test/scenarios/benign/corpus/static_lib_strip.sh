#!/bin/bash
# cc -c, ar rcs, ranlib, ld -r, nm, objdump, strip; make with a static library; run the program
set -eu
d=$(mktemp -d /tmp/vigil-cc-XXXXXX); trap 'rm -rf "$d"' EXIT; cd "$d"
for i in 1 2 3 4; do printf 'int f%d(int x){int s=0;for(int i=0;i<x;i++)s+=i*%d;return s;}\n' $i $i > f$i.c; done
printf '#include <stdio.h>\nint f1(int);int f2(int);int f3(int);int f4(int);\nint main(){printf("%%d\\n",f1(10)+f2(20)+f3(30)+f4(40));return 0;}\n' > main.c
printf 'CFLAGS=-O2 -Wall\nall: prog\nlibf.a: f1.o f2.o f3.o f4.o\n\tar rcs $@ $^\n\tranlib $@\nprog: main.o libf.a\n\t$(CC) -o $@ main.o -L. -lf\nclean:\n\trm -f *.o *.a prog\n' > Makefile
make -j2 -s; ./prog >/dev/null; ld -r -o all.o f1.o f2.o; nm all.o >/dev/null; objdump -d prog >/dev/null; strip prog; ./prog >/dev/null
cc -shared -fPIC -o libg.so f1.c f2.c; cc -o dyn main.c f3.c f4.c -L. -lg -Wl,-rpath,"$d"; ./dyn >/dev/null; ldd ./dyn >/dev/null; make -s clean
