# Proxima: the commands the README names.
PY      := .venv/bin/python
VENV    := .venv/.installed
OS_JARS := infra/local/opensearch/target/.built
S3_JAR  := infra/local/s3proxy/target/s3proxy.jar

.PHONY: install demo up down status test test-reliability lint bench clean

$(VENV): pyproject.toml
	bash infra/local/bootstrap.sh
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev,aws,infra]'
	touch $@

$(OS_JARS): infra/local/opensearch/pom.xml $(wildcard infra/local/opensearch/src/main/java/proxima/opensearch/*.java)
	mvn -B -q -f infra/local/opensearch/pom.xml package
	touch $@

$(S3_JAR): infra/local/s3proxy/pom.xml
	mvn -B -q -f infra/local/s3proxy/pom.xml package

install: $(VENV) $(OS_JARS) $(S3_JAR)  ## Python env + OpenSearch and S3Proxy jars (cached)
	@# bytecode for our own modules too (pip compiled the dependencies): where the
	@# environment sets PYTHONDONTWRITEBYTECODE, every process compiled them (0.5 s each)
	$(PY) -m compileall -q proxima flows blocks > /dev/null

demo: install  ## The whole platform end to end on the local stack
	$(PY) -m proxima.cli demo

up: install
	$(PY) -m proxima.cli stack up

down:
	$(PY) -m proxima.cli stack down

status:
	$(PY) -m proxima.cli stack status

test: install  ## Every test, against the real services the suite starts itself
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-reliability: install  ## Only the fault-injection and security suite (issue 9)
	$(PY) -m pytest -q -p no:cacheprovider -m reliability

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	# infra/aws: synthesize offline, then cfn-lint every template. W3005 (a DependsOn
	# that a GetAtt already implies) fires only on aws-cdk-lib's own generated resources.
	cd infra/aws && JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=1 ../../$(PY) app.py > /dev/null
	.venv/bin/cfn-lint --ignore-checks W3005 -- infra/aws/cdk.out/*.template.json

bench: install  ## The quick benchmarks (see docs/benchmarks.md for the others)
	cd benchmarks && ../$(PY) stack_startup.py && ../$(PY) analysis_overhead.py

clean: down
	rm -rf .state infra/local/opensearch/target infra/local/s3proxy/target
