#!/usr/bin/env bash
# make test-kafka: libnotif-forward against a real Kafka (KRaft) with oslo's kafka
# driver. Fetches Apache Kafka's jars from Maven Central into build/kafka/lib
# (mvn dependency:copy-dependencies, bindings/python/tests/broker/kafka/pom.xml; maven and
# Java 17 from apt-get when missing), installs confluent-kafka into the Python
# tests' venv, then runs bindings/python/tests/broker/kafka.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../../../.."
lib=build/kafka/lib
if [[ ! -f $lib/kafka_2.13-3.9.1.jar ]]; then
    if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven openjdk-17-jre-headless </dev/null
    fi
    mkdir -p "$lib"
    mvn -q -B -f bindings/python/tests/broker/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/$lib"
fi
bindings/python/tests/run.sh --version >/dev/null # the venv
build/python-venv/bin/python -m pip install -q --disable-pip-version-check confluent-kafka==2.6.1
exec bindings/python/tests/run.sh bindings/python/tests/broker/kafka -s "$@"
