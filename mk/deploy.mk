# Deployment targets (docs/deployment.md). Included from the Makefile: `include mk/deploy.mk`.
#   make install   [DESTDIR=] [PREFIX=/opt/canrelay] [BINDIR=/usr/local/bin] [UNITDIR=/lib/systemd/system]
#   make uninstall (same variables)
#   make tarball [ARCH=amd64|arm64|armhf] → dist/pkg/canrelay-<version>-linux-<arch>.tgz (unpack, run
#                  canrelay-<version>/bin/canrelay-install)
#   make deb [ARCH=…] → dist/pkg/canrelay_<version>-1_<arch>.deb
#   make packages  → the .deb and the tarball for every architecture (packaging/targets.sh)
#   Every package carries its own Node.js runtime and addons built for ARCH (default: this machine's).
#   make test-deploy  the deployment tests only (systemd units, install, .deb, nginx)
PREFIX ?= /opt/canrelay
BINDIR ?= /usr/local/bin
UNITDIR ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
DEPLOY_OUT ?= dist/pkg
ARCH ?=
DEPLOY_ENV = DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' BINDIR='$(BINDIR)' UNITDIR='$(UNITDIR)' SYSUSERSDIR='$(SYSUSERSDIR)' ARCH='$(ARCH)'
PACKAGE_ARCHES = amd64 arm64 armhf

.PHONY: install uninstall tarball deb packages test-deploy

install: build
	$(DEPLOY_ENV) bash packaging/install.sh

uninstall:
	$(DEPLOY_ENV) bash packaging/uninstall.sh

tarball: build
	ARCH='$(ARCH)' bash packaging/tarball.sh $(DEPLOY_OUT)

deb: build
	ARCH='$(ARCH)' bash packaging/deb/build-deb.sh $(DEPLOY_OUT)

packages: build
	set -e; for a in $(PACKAGE_ARCHES); do ARCH=$$a bash packaging/deb/build-deb.sh $(DEPLOY_OUT); ARCH=$$a bash packaging/tarball.sh $(DEPLOY_OUT); done

test-deploy: build
	$(NODE_TEST) --test-timeout=1800000 --test-concurrency=1 $(call TESTS_IN,deploy); $(SKIP_SUMMARY)
