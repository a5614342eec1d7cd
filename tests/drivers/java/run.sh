#!/usr/bin/env bash
# pgjdbc (Debian's libpostgresql-jdbc-java) with HikariCP (libhikaricp-java),
# run as a single-file source program (java 11+ compiles it in memory).
# Run by tests/drivers/run.sh from tests/drivers.
set -euo pipefail
J=/usr/share/java
exec java -cp "$J/postgresql.jar:$J/HikariCP.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn java/PgjdbcTest.java
