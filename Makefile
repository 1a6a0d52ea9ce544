# lunas: build, demo, test, bench, check (sanitizers), valgrind (memcheck), fuzz (the API fuzzer), doc (the API
# reference), install.
# Every target that needs Debian packages calls `deps` first, which installs only what is missing.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
LUA ?= lua5.4

# nftables (the nft program) is for the tests only: they look at rule sets from outside with `nft -j list ruleset`;
# groff-base too: tests/man_spec.lua renders man/lunas.1 with groff; busybox-static is the root file system of
# examples/busybox_root.lua. runc is what tests/oci_spec.lua runs beside lunas-oci. bpftool shows
# tests/cgroup_devices_spec.lua the device programs attached to a cgroup, from outside lunas. tmux is the real
# terminal tests/monitor_spec.lua drives lunas top in (send-keys, capture-pane).
# bubblewrap: tests/audit_spec.lua audits the real bwrap's sandbox beside lunas's (lunas audit --wrap).
# lua-ldoc is for tests/doc_spec.lua, which runs ldoc to keep the API reference complete; lua5.1 is the Lua it runs
# on (Debian's ldoc takes 5.1 or 5.2 through lua-any, and its dependencies are met by lua5.4 alone).
# passt gives the pasta program that a sandbox with net = "pasta" runs (lunas.egress); python3 is the client
# tests/firewall_spec.lua runs inside sandboxes to tell an answered, refused and timed-out connection apart.
DEB_PACKAGES = lua5.4 liblua5.4-dev libnl-3-dev libnl-route-3-dev libnftables-dev libcap-dev libseccomp-dev \
               lua-busted pkg-config gcc make iproute2 util-linux uidmap luarocks iputils-ping iperf3 graphviz \
               nftables groff-base lua-ldoc lua5.1 busybox-static runc bpftool bubblewrap passt python3 tmux
# lua-markdown renders the doc comments' Markdown (without it ldoc falls back to plain text).
DOC_PACKAGES = lua-ldoc lua5.1 lua-markdown
BENCH_PACKAGES = bubblewrap crun runc
VALGRIND_PACKAGES = valgrind
# (selinux-policy-default and policycoreutils are files for the SELinux lane's guest, make test-vm-selinux: on a
# host whose kernel runs no SELinux they change nothing at boot; their systemd units ask for SELinux)
VM_PACKAGES = qemu-system-x86 busybox-static kmod cpio apparmor selinux-policy-default policycoreutils selinux-utils
# bubblewrap's suite: the real bwrap side by side, its Python seccomp test, capsh/getpcaps, the source unpacker
BWRAP_TEST_PACKAGES = bubblewrap python3 python3-seccomp libcap2-bin dpkg-dev strace util-linux
# the OCI runtime's real clients (tests/oci/clients.sh): podman (with conmon), containerd (with ctr and its runc shim),
# runc and crun as reference runtimes, busybox for the image; unshare/nsenter (util-linux), script (bsdutils)
OCI_TEST_PACKAGES = podman containerd runc crun busybox-static util-linux bsdutils

CFLAGS ?= -O2 -g
WARNINGS = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
PC_LIBS = libnl-route-3.0 libnftables
override CFLAGS += -std=gnu11 -D_GNU_SOURCE $(WARNINGS) -fPIC -D_FORTIFY_SOURCE=2 \
                   $(shell pkg-config --cflags lua5.4 $(PC_LIBS) 2>/dev/null)
ifdef SANITIZE
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
# (build steps that load the sanitizer core into a plain lua5.4 need its runtime first)
PRECOMPILE_ENV = LD_PRELOAD=$(shell gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0
endif
# The host binary links Lua statically (faster start-up: no liblua relocation) and exports its symbols so
# C modules a recipe loads find them.
LUA_LIBDIR = $(shell pkg-config --variable=libdir lua5.4 2>/dev/null)
LUA_STATIC = $(LUA_LIBDIR)/liblua5.4.a
# libnftables (and its five libraries) is opened with dlopen on first use: NAT is rare, start-up is not.
SYS_LIBS = $(shell pkg-config --libs libnl-route-3.0 libseccomp libcap 2>/dev/null)
LIBS = $(SYS_LIBS) -lm -ldl
# The host binary links them statically (the -dev packages ship the archives): no relocation of their symbols at
# every start, and only the parts of libnl lunas uses (with their constructors). core.so, for a stock lua5.4,
# links the shared ones.
BIN_LIBS = -Wl,-Bstatic $(SYS_LIBS) -Wl,-Bdynamic -lm -ldl

CORE_SRC = src/core.c src/helpers.c src/proc.c src/ns.c src/mount.c src/tty.c src/net.c src/tc.c src/nft.c src/caps.c src/seccomp.c src/landlock.c src/cgroup.c src/interrupt.c src/watch.c
CORE_OBJ = $(CORE_SRC:src/%.c=$(BUILD)/obj/%.o)
# PID 1 of a sandbox: a freestanding program (x86_64, aarch64) embedded in the core and exec'd from a sealed memfd.
ifdef LUNAS_NO_REAPER_ELF
override CFLAGS += -DLUNAS_NO_REAPER_ELF
else
CORE_OBJ += $(BUILD)/obj/reaper_elf.o
endif
REAPER_CFLAGS = -O2 -std=gnu11 -Wall -Wextra -Werror -ffreestanding -fno-stack-protector -fno-pie -no-pie -nostdlib \
                -static -fno-asynchronous-unwind-tables -Wl,--build-id=none -Wl,-z,noexecstack
LUA_MODULES = $(sort $(wildcard lua/lunas/*.lua lua/lunas/*/*.lua))
HEADERS = src/lunas.h src/netlink.h

BIN = $(BUILD)/bin/lunas
# lunas as bubblewrap: the same binary under another name (argv[0] selects the mode). A hard link, so that
# /proc/self/exe of a lunas-bwrap is named lunas-bwrap too (bubblewrap's users run /proc/self/exe inside).
BWRAP_BIN = $(BUILD)/bin/lunas-bwrap
# lunas as an OCI runtime (runc's command line): podman, containerd and Kubernetes call it by path.
OCI_BIN = $(BUILD)/bin/lunas-oci
CORE_SO = $(BUILD)/lib/lunas/core.so
# The escape probe (src/probe.c): one attempt to get out of a sandbox per invocation. `lunas audit` runs it inside
# the sandbox it audits, and finds it beside itself (../libexec/lunas/lunas-probe); linked statically, so that it
# runs in any tree or image (a busybox root, a container). The test suite's battery (tests/security_spec.lua) runs
# the same program under its old name.
PROBE_BIN = $(BUILD)/libexec/lunas/lunas-probe
PROBE = $(BUILD)/tests/escape-probe

.PHONY: all deps demo test test-vm test-vm-selinux test-bwrap test-oci check valgrind bench doc fuzz install rock-install uninstall clean tidy

all: $(BIN) $(BWRAP_BIN) $(OCI_BIN) $(CORE_SO) $(PROBE_BIN)

deps:
	@missing=""; for p in $(DEB_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install:$$missing" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/obj/%.o: src/%.c $(HEADERS) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/embedded.c: src/embed.lua $(LUA_MODULES) $(BUILD)/obj/seccomp_programs.lua | $(BUILD)/obj
	$(LUA) src/embed.lua $@ lua $(LUA_MODULES) lunas.seccomp_programs=$(BUILD)/obj/seccomp_programs.lua

# The default seccomp profile compiled once, at build time, by the core just built (src/precompile.lua): the
# host binary loads it instead of compiling it in every process.
$(BUILD)/obj/seccomp_programs.lua: src/precompile.lua lua/lunas/security.lua $(CORE_SO)
	$(PRECOMPILE_ENV) LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua" \
	  LUA_CPATH="$(CURDIR)/$(CORE_SO:lib/lunas/core.so=lib/?.so)" $(LUA) src/precompile.lua $@

$(BUILD)/obj/reaper: src/reaper.c | $(BUILD)/obj
	$(CC) $(REAPER_CFLAGS) -o $@ $<
	strip $@

$(BUILD)/obj/reaper_elf.c: $(BUILD)/obj/reaper src/embed.lua
	$(LUA) src/embed.lua --binary $@ lunas_reaper_elf $<

$(BUILD)/obj/reaper_elf.o: $(BUILD)/obj/reaper_elf.c
	$(CC) $(filter-out $(WARNINGS),$(CFLAGS)) -c -o $@ $<

$(BUILD)/obj/embedded.o: $(BUILD)/obj/embedded.c
	$(CC) $(filter-out $(WARNINGS),$(CFLAGS)) -c -o $@ $<

$(BIN): $(BUILD)/obj/main.o $(BUILD)/obj/embedded.o $(CORE_OBJ) | $(BUILD)/bin
	$(CC) $(LDFLAGS) -Wl,-E -o $@ $^ $(LUA_STATIC) $(BIN_LIBS)

$(BWRAP_BIN): $(BIN)
	ln -f $< $@

$(OCI_BIN): $(BIN)
	ln -f $< $@

$(CORE_SO): $(CORE_OBJ) | $(BUILD)/lib/lunas
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(SYS_LIBS) -lm

# (a sanitizer build links it dynamically: the sanitizers' runtimes are shared libraries)
$(PROBE_BIN): src/probe.c | $(BUILD)/libexec/lunas
	$(CC) $(CFLAGS) $(LDFLAGS) $(if $(SANITIZE),,-static) -o $@ $<

$(PROBE): $(PROBE_BIN) | $(BUILD)/tests
	ln -f $< $@

$(BUILD)/obj $(BUILD)/bin $(BUILD)/lib/lunas $(BUILD)/tests $(BUILD)/libexec/lunas:
	mkdir -p $@

demo: deps all
	$(BIN) examples/hello.lua

# The suite also runs the API fuzzer (tests/fuzz_spec.lua) over a sanitizer build of the core: build/asan.
ASAN_CORE = build/asan/lib/lunas/core.so
test: deps
	$(MAKE) all $(PROBE)
	$(MAKE) BUILD=build/asan SANITIZE=1 $(ASAN_CORE)
	LUNAS_ROOT="$(CURDIR)" LUNAS_BUILD="$(CURDIR)/$(BUILD)" LUNAS_FUZZ_BUILD="$(CURDIR)/build/asan" sh tests/run.sh

# The API fuzzer alone, FUZZ_CALLS calls (a million by default) over the sanitizer build; FUZZ_ARGS passes
# --seed S, --replay S (one batch of an earlier run), --only NAME, --verbose 1 (tests/fuzz/run.sh). Output in
# build/fuzz (summary.json, findings, sanitizer logs).
FUZZ_CALLS ?= 1000000
fuzz: deps
	$(MAKE) BUILD=build/asan SANITIZE=1 $(ASAN_CORE)
	LUNAS_ROOT="$(CURDIR)" LUNAS_FUZZ_BUILD="$(CURDIR)/build/asan" LUNAS_SANITIZE=1 \
	  sh tests/fuzz/run.sh --calls $(FUZZ_CALLS) $(FUZZ_ARGS) --out "$(CURDIR)/build/fuzz"

# The whole suite on Debian's stock kernel in a qemu VM (tests/vm/run.sh): pure cgroup v2, netem and friends.
test-vm: deps
	$(MAKE) EXTRA_PACKAGES="$(VM_PACKAGES)" deps
	$(MAKE) all $(PROBE)
	$(MAKE) BUILD=build/asan SANITIZE=1 $(ASAN_CORE)
	LUNAS_ROOT="$(CURDIR)" LUNAS_BUILD="$(CURDIR)/$(BUILD)" sh tests/vm/run.sh

# The LSM specs (tag #lsm) again on the same kernel booted with SELinux instead of AppArmor (permissive, Debian's
# reference policy): tests/vm/run.sh with VM_LANE=selinux. A few minutes.
test-vm-selinux: deps
	$(MAKE) EXTRA_PACKAGES="$(VM_PACKAGES)" deps
	$(MAKE) all $(PROBE)
	VM_LANE=selinux LUNAS_BUSTED_ARGS="--tags=lsm $(LUNAS_BUSTED_ARGS)" LUNAS_ROOT="$(CURDIR)" \
	  LUNAS_BUILD="$(CURDIR)/$(BUILD)" sh tests/vm/run.sh

# bubblewrap's own test suite (Debian's source package, unmodified) against lunas-bwrap and, side by side, the real
# bwrap: as root and as an unprivileged user, each in private namespaces (tests/bwrap/run.sh).
test-bwrap: deps
	$(MAKE) EXTRA_PACKAGES="$(BWRAP_TEST_PACKAGES)" deps
	$(MAKE) all
	tests/bwrap/run.sh "$(BUILD)" "$(CURDIR)/$(BUILD)/bin/lunas-bwrap" /usr/bin/bwrap

# lunas-oci driven by its real clients -- podman 4.3 (conmon) and containerd 1.6 (ctr, runc shim) -- in private
# mount, network, pid and cgroup namespaces, with every cgroup below our own (tests/oci/clients.sh). The same script
# validates the harness against another runtime: tests/oci/clients.sh /usr/sbin/runc
test-oci: deps
	$(MAKE) EXTRA_PACKAGES="$(OCI_TEST_PACKAGES)" deps
	$(MAKE) all
	tests/oci/clients.sh "$(CURDIR)/$(BUILD)/bin/lunas-oci"

# The whole suite again with AddressSanitizer and UndefinedBehaviorSanitizer in the core and the host binary.
check: deps
	$(MAKE) BUILD=build/asan SANITIZE=1 all build/asan/tests/escape-probe
	LUNAS_ROOT="$(CURDIR)" LUNAS_BUILD="$(CURDIR)/build/asan" LUNAS_FUZZ_BUILD="$(CURDIR)/build/asan" LUNAS_SANITIZE=1 \
	  sh tests/run.sh

# The core specs (tests/core_*_spec.lua) under valgrind memcheck, on a plain -O1 build: fails on any memory error or
# definite leak (tests/valgrind.sh; suppressions for what is not lunas's in tests/valgrind.supp).
valgrind: deps
	$(MAKE) EXTRA_PACKAGES="$(VALGRIND_PACKAGES)" deps
	$(MAKE) BUILD=build/valgrind CFLAGS="-O1 -g" all
	LUNAS_ROOT="$(CURDIR)" LUNAS_BUILD="$(CURDIR)/build/valgrind" sh tests/valgrind.sh

bench: deps
	$(MAKE) EXTRA_PACKAGES="$(BENCH_PACKAGES) $(OCI_TEST_PACKAGES)" deps
	$(MAKE) all
	LUNAS_ROOT="$(CURDIR)" LUNAS_BUILD="$(CURDIR)/$(BUILD)" sh tests/bench/run.sh $(BENCH_ARGS)

# The API reference: LDoc comments in src/*.c and lua/lunas/*.lua, files and options in config.ld. tests/doc_spec.lua
# fails when an exported name has no entry, or an entry names nothing exported.
doc: deps
	$(MAKE) EXTRA_PACKAGES="$(DOC_PACKAGES)" deps
	LUA_PATH="$(CURDIR)/doc/?.lua;;" ldoc --fatalwarnings -d $(BUILD)/doc .
	@echo "API reference: $(BUILD)/doc/index.html"

tidy: $(BUILD)/obj/embedded.c
	clang-tidy --quiet --warnings-as-errors='*' -checks='-*,bugprone-*,-bugprone-easily-swappable-parameters' \
	  $(CORE_SRC) src/main.c src/probe.c -- -std=gnu11 -D_GNU_SOURCE $(shell pkg-config --cflags lua5.4 $(PC_LIBS))
	clang-tidy --quiet --warnings-as-errors='*' -checks='-*,bugprone-*,-bugprone-easily-swappable-parameters' \
	  src/reaper.c -- -std=gnu11 -ffreestanding

LUA_VERSION = 5.4
MANDIR ?= $(PREFIX)/share/man
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/lunas \
	  $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas/cli $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas/oci
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/lunas
	install -d $(DESTDIR)$(PREFIX)/libexec/lunas
	install -m 0755 $(PROBE_BIN) $(DESTDIR)$(PREFIX)/libexec/lunas/lunas-probe
	ln -f $(DESTDIR)$(PREFIX)/bin/lunas $(DESTDIR)$(PREFIX)/bin/lunas-bwrap
	ln -f $(DESTDIR)$(PREFIX)/bin/lunas $(DESTDIR)$(PREFIX)/bin/lunas-oci
	install -m 0644 $(CORE_SO) $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/lunas/core.so
	install -m 0644 $(wildcard lua/lunas/*.lua) $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas/
	install -m 0644 $(wildcard lua/lunas/cli/*.lua) $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas/cli/
	install -m 0644 $(wildcard lua/lunas/oci/*.lua) $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas/oci/
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0644 completions/lunas.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/lunas
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/lunas.1 $(DESTDIR)$(MANDIR)/man1/lunas.1

# What luarocks' make backend calls (rockspec/lunas-scm-1.rockspec), with its own directories.
rock-install: all
	install -d $(INST_LIBDIR)/lunas $(INST_LUADIR)/lunas/cli $(INST_LUADIR)/lunas/oci $(INST_BINDIR)
	install -m 0644 $(CORE_SO) $(INST_LIBDIR)/lunas/core.so
	install -m 0644 $(wildcard lua/lunas/*.lua) $(INST_LUADIR)/lunas/
	install -m 0644 $(wildcard lua/lunas/cli/*.lua) $(INST_LUADIR)/lunas/cli/
	install -m 0644 $(wildcard lua/lunas/oci/*.lua) $(INST_LUADIR)/lunas/oci/
	install -m 0755 $(BIN) $(INST_BINDIR)/lunas
	install -d $(INST_BINDIR)/../libexec/lunas
	install -m 0755 $(PROBE_BIN) $(INST_BINDIR)/../libexec/lunas/lunas-probe

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/libexec/lunas $(DESTDIR)$(PREFIX)/bin/lunas $(DESTDIR)$(PREFIX)/bin/lunas-bwrap $(DESTDIR)$(PREFIX)/bin/lunas-oci $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/lunas \
	  $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/lunas $(DESTDIR)$(PREFIX)/share/bash-completion/completions/lunas \
	  $(DESTDIR)$(MANDIR)/man1/lunas.1

clean:
	rm -rf build
