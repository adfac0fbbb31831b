# Deployment targets (docs/deployment.md). Included from the Makefile: `include mk/deploy.mk`.
#   make install   [DESTDIR=] [PREFIX=/opt/canrelay] [BINDIR=/usr/local/bin] [UNITDIR=/lib/systemd/system]
#   make uninstall (same variables)
#   make tarball   → dist/pkg/canrelay-<version>-linux-<arch>.tgz (unpack, run canrelay-<version>/bin/canrelay-install)
#   make deb       → dist/pkg/canrelay_<version>-1_<arch>.deb
#   make test-deploy  the deployment tests only (systemd units, install, .deb, nginx)
PREFIX ?= /opt/canrelay
BINDIR ?= /usr/local/bin
UNITDIR ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
DEPLOY_OUT ?= dist/pkg
DEPLOY_ENV = DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' BINDIR='$(BINDIR)' UNITDIR='$(UNITDIR)' SYSUSERSDIR='$(SYSUSERSDIR)'

.PHONY: install uninstall tarball deb test-deploy

install: build
	$(DEPLOY_ENV) bash packaging/install.sh

uninstall:
	$(DEPLOY_ENV) bash packaging/uninstall.sh

tarball: build
	bash packaging/tarball.sh $(DEPLOY_OUT)

deb: build
	bash packaging/deb/build-deb.sh $(DEPLOY_OUT)

test-deploy: build
	$(NODE) --test --test-force-exit --test-timeout=600000 --test-concurrency=1 $$(find dist/test -maxdepth 1 -name 'deploy-*.test.js' | sort)
