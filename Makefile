# snap / revert: build, check, asan, bench, demo, install
.SUFFIXES:

VERSION  := 0.1.0
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
BUILD    ?= build

PKGS     := libarchive libzstd libcurl jansson inih libcrypto libpq libmariadb yaml-0.1 libxml-2.0
CC       ?= cc
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wvla -Wcast-qual -Wno-format-nonliteral -Werror
CFLAGS   ?= -O2 -g
ALLCFLAGS = -std=c11 -D_GNU_SOURCE -DSNAP_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) \
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
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

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
	$(MAKE) BUILD=build-asan CFLAGS='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all' all unit
	SNAP_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 tests/run

# Every fuzzer for FUZZ_SECONDS from its committed seed corpus, in its own tree (clang).
fuzz:
	$(MAKE) -j2 BUILD=build-fuzz CC=clang CFLAGS='-O1 -g -fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=all' fuzz-bins
	tests/fuzz/run build-fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS)

bench: all
	bench/run

demo: all
	scripts/demo

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 docs/snap.1 docs/revert.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/snap.conf.5 $(DESTDIR)$(MANDIR)/man5/

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all unit fuzz-bins check asan fuzz bench demo install clean
