#!/usr/bin/env bash
# Go drivers from Debian's packages (golang-github-jackc-pgx-v4-dev,
# golang-github-lib-pq-dev), built offline in GOPATH mode as Debian packages
# them. Usage: go/run.sh BUILD_DIR pgx|pq (from tests/drivers; builds once).
set -euo pipefail
out=$1 mode=$2
export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off
export GOCACHE=${GOCACHE:-/tmp/pgtp-go-cache}
if [ ! -x "$out/drivertest" ]; then
  mkdir -p "$out"
  go build -o "$out/drivertest" ./go/drivertest.go
fi
exec "$out/drivertest" "$mode"
