# snap / revert: build, check, asan, bench, demo, install
.SUFFIXES:

VERSION  := 0.1.0
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
BUILD    ?= build
# Installed names: PROGRAM_PREFIX=db gives dbsnap and dbrevert (the Debian package's names,
# beside snapd's /usr/bin/snap); the man pages, documents and completion follow them.
PROGRAM_PREFIX ?=
PROGRAM_SUFFIX ?=
SNAP_NAME   := $(PROGRAM_PREFIX)snap$(PROGRAM_SUFFIX)
REVERT_NAME := $(PROGRAM_PREFIX)revert$(PROGRAM_SUFFIX)
DOCDIR   ?= $(PREFIX)/share/doc/$(SNAP_NAME)
COMPDIR  ?= $(PREFIX)/share/bash-completion/completions

PKGS     := libarchive libzstd libcurl jansson inih libcrypto libpq libmariadb yaml-0.1 libxml-2.0
CC       ?= cc
# WERROR= turns warnings back into warnings (the Debian package: a newer toolchain or its
# hardening flags must not break a build that works).
WERROR   ?= -Werror
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wvla -Wcast-qual -Wno-format-nonliteral $(WERROR)
CFLAGS   ?= -O2 -g
ALLCFLAGS = -std=c11 -D_GNU_SOURCE -DSNAP_VERSION='"$(VERSION)"' $(WARN) $(CPPFLAGS) $(CFLAGS) \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   := $(shell pkg-config --libs $(PKGS)) -lpthread

LIB_SRC  := $(sort $(wildcard common/*.c storage/*.c catalog/*.c engines/*.c snapshot/*.c restore/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libsnap.a
BINS     := $(BUILD)/snap $(BUILD)/revert
UNIT_SRC := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:%.c=$(BUILD)/%)
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2

all: $(BINS)

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/snap $(BUILD)/revert: $(BUILD)/%: $(BUILD)/cmd/%.o $(BUILD)/cmd/opts.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The command line's parser is not in the library: its tests link it themselves.
$(BUILD)/tests/unit/cmd/%: tests/unit/cmd/%.c $(BUILD)/cmd/opts.o $(LIB) $(wildcard */*.h)
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -Wno-missing-prototypes -o $@ $< $(BUILD)/cmd/opts.o $(LIB) $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB) $(wildcard */*.h)
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -Wno-missing-prototypes -o $@ $< $(LIB) $(LDLIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BIN)

# libFuzzer harnesses of the parsers of outside input (tests/fuzz), linked with -fsanitize=fuzzer;
# the library objects are built with -fsanitize=fuzzer-no-link by `make fuzz`.
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(LIB) $(wildcard */*.h)
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -Wno-missing-prototypes -fsanitize=fuzzer -o $@ $< $(LIB) $(LDLIBS)

fuzz-bins: $(FUZZ_BIN)

# The test command of the README: unit tests, then end-to-end tests against real servers.
check: all unit
	tests/run

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer, in its own tree.
asan:
	$(MAKE) -j2 BUILD=build-asan CFLAGS='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all' all unit
	T_SKIP_OWN_BUILD=1 SNAP_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 tests/run

# Every fuzzer for FUZZ_SECONDS from its committed seed corpus, in its own tree (clang).
fuzz:
	$(MAKE) -j2 BUILD=build-fuzz CC=clang CFLAGS='-O1 -g -fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=all' fuzz-bins
	tests/fuzz/run build-fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS)

bench: all
	bench/run

demo: all
	scripts/demo

# The man pages' title, NAME and cross-references follow the installed names.
MANSED := -e 's/^\.TH SNAP 1/.TH $(shell echo $(SNAP_NAME) | tr a-z A-Z) 1/' \
          -e 's/^\.TH REVERT 1/.TH $(shell echo $(REVERT_NAME) | tr a-z A-Z) 1/' \
          -e 's/^snap \\-/$(SNAP_NAME) \\-/' -e 's/^revert \\-/$(REVERT_NAME) \\-/' \
          -e 's/^\.BR snap (1)/.BR $(SNAP_NAME) (1)/' -e 's/^\.BR revert (1)/.BR $(REVERT_NAME) (1)/' \
          -e 's|/usr/local/share/doc/snap/|$(DOCDIR)/|g'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR)/recipes $(DESTDIR)$(COMPDIR)
	install -m 0755 $(BUILD)/snap $(DESTDIR)$(BINDIR)/$(SNAP_NAME)
	install -m 0755 $(BUILD)/revert $(DESTDIR)$(BINDIR)/$(REVERT_NAME)
	sed $(MANSED) docs/snap.1 >$(DESTDIR)$(MANDIR)/man1/$(SNAP_NAME).1
	sed $(MANSED) docs/revert.1 >$(DESTDIR)$(MANDIR)/man1/$(REVERT_NAME).1
	sed $(MANSED) docs/snap.conf.5 >$(DESTDIR)$(MANDIR)/man5/snap.conf.5
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/$(SNAP_NAME).1 $(DESTDIR)$(MANDIR)/man1/$(REVERT_NAME).1 \
	    $(DESTDIR)$(MANDIR)/man5/snap.conf.5
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/examples/snap.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 0644 $(wildcard docs/recipes/*) $(DESTDIR)$(DOCDIR)/recipes/
	sed 's/^complete -F _snap_complete .*/complete -F _snap_complete $(SNAP_NAME) $(REVERT_NAME)/' \
	    scripts/snap.bash-completion >$(DESTDIR)$(COMPDIR)/$(SNAP_NAME)
	chmod 0644 $(DESTDIR)$(COMPDIR)/$(SNAP_NAME)
	ln -sf $(SNAP_NAME) $(DESTDIR)$(COMPDIR)/$(REVERT_NAME)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all unit fuzz-bins check asan fuzz bench demo install clean
