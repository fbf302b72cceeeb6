# Lifeline: the two commands are `make demo` and `make test`.
CARGO ?= cargo
BIN := target/debug/lifeline

.PHONY: setup demo test lint crds manifests release bench bench-operator

## setup: build everything (binary and tests)
setup:
	$(CARGO) build --all-targets --locked

## demo: the main job on the embedded default: two simulated clusters, a lost primary, a restore in the standby (about 30 s; DEMO_ARGS=--keep leaves the standby running)
demo:
	$(CARGO) build --locked
	target/debug/lifeline demo $(DEMO_ARGS)

## test: lint, then every test (unit and integration; starts and stops its own S3 servers)
test: lint
	$(CARGO) test --all-targets --locked

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

## crds: regenerate crds/ and the Helm chart's copy from the Rust types in src/api/
crds:
	$(CARGO) run --quiet --locked -- crd --dir crds
	rm -f charts/lifeline/files/crds/*.yaml manifests/base/crds/*.yaml
	cp crds/*.yaml charts/lifeline/files/crds/
	cp crds/*.yaml manifests/base/crds/

## manifests: regenerate manifests/base (kustomize) from the Helm chart's default values
manifests: crds
	scripts/kustomize-base.sh

## release: the release binary, exactly as the Dockerfile builds it for the image
release:
	$(CARGO) build --release --locked --bin lifeline

## bench: Lifeline vs restic on a ~2.6 GB dataset (pgbench + random + logs), local and S3
bench:
	$(CARGO) build --release --locked
	bench/run.sh

## bench-operator: 1,000 BackupPolicies in 100 namespaces on a simulated cluster: time to Ready, operator RSS, requests, status writes
bench-operator:
	$(CARGO) build --release --locked
	target/release/lifeline bench-operator
