# vigil's container image: a static vigil binary on an empty base.
#
#   docker build -t localhost/vigil:dev .          (or buildah, kaniko, ...)
#   deploy/image/build.sh                          (no docker, no registry: an OCI tarball for ctr import)
#
# Base images are arguments, so a mirror can be named without editing this
# file: --build-arg GO_IMAGE=mirror.example/golang:1.26-bookworm.
#
# The agent runs as uid 0 in the host PID namespace, privileged or with
# exactly these capabilities (checked by dropping each in turn on Linux 6.18):
#   CAP_BPF          BPF maps (ring buffer, cgroup local storage), programs and
#                    BTF: the tracer and the connect guard.
#   CAP_PERFMON      the tracing programs (tp_btf raw_syscalls:sys_exit,
#                    sched_process_exec/exit): without it the tracer does not load.
#   CAP_NET_ADMIN    the connect guard's cgroup connect4/6 and sendmsg4/6
#                    programs (deny-connect): without it the guard does not load.
#   CAP_DAC_READ_SEARCH  open a container's cgroup by its id (open_by_handle_at)
#                    to track it: without it no container is traced.
#   CAP_KILL         kill-process: SIGKILL through a pidfd to workload processes
#                    of other users (cgroup.kill, for kill, needs no capability).
#   CAP_SYS_ADMIN    only to mount bpffs at /sys/fs/bpf when the host has not;
#                    it also stands in for CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.
# Not needed: CAP_SYS_PTRACE (the agent reads only /proc/PID/cgroup, which
# anyone may read), CAP_SYS_RESOURCE (since 5.11 BPF memory is charged to the
# cgroup, not RLIMIT_MEMLOCK; vigil needs 6.2+), CAP_DAC_OVERRIDE (the cgroup
# files it writes, cgroup.freeze, cgroup.kill, are root's).
# Unprivileged, the container needs seccomp and AppArmor unconfined (their
# default profiles refuse bpf(), open_by_handle_at and writes under
# /sys/fs/bpf) and, on cgroup v2, gets a cgroup namespace of its own.
# Mounts: /sys/fs/bpf (bidirectional if the agent may mount bpffs),
# /sys/kernel/btf (read-only), /sys/fs/cgroup, /var/run/nri, /run/vigil,
# /var/lib/vigil, /etc/vigil. See deploy/helm/vigil.

ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=scratch

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY . .
ARG TARGETARCH
# What `vigil version` and vigil_build_info report (the build context has no
# .git): docker build --build-arg VERSION=$(git describe --tags --always)
#   --build-arg COMMIT=$(git rev-parse HEAD) ...
ARG VERSION=dev
ARG COMMIT=unknown
# Static: CGO_ENABLED=0, so the image needs no libc; checked below. Only the
# modules the binary imports are fetched (not the chart tests' helm modules).
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH:-amd64} go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
        -o /out/usr/bin/vigil ./cmd/vigil \
    && if readelf -lW /out/usr/bin/vigil | grep -q INTERP; then echo "vigil is not static" >&2; exit 1; fi \
    && mkdir -p /out/etc/ssl/certs /out/etc/vigil /out/run/vigil /out/var/lib/vigil /out/var/log/vigil /out/tmp \
    && chmod 1777 /out/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/:/usr/bin/vigil\n' >/out/etc/passwd \
    && printf 'root:x:0:\n' >/out/etc/group

FROM ${BASE_IMAGE}
COPY --from=build /out/ /
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="vigil node agent: eBPF syscall tracing, detection, response, audit"
ENTRYPOINT ["/usr/bin/vigil"]
CMD ["agent"]
