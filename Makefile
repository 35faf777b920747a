# pbx: one non-recursive Makefile. Output goes under $(BUILD).
#   make            build/pbx and build/libpbx.a
#   make run        start `pbx serve 127.0.0.1:9234` (the paper's greeting)
#   make test       unit tests (ASan+UBSan) and end-to-end tests
#   make asan       the sanitizer build only (build/asan/)
#   make lint       banned functions, layering, clang-format check
#   make format     reformat the sources (and the unit tests and bench peers)
# CC=clang and BUILD=dir let several builds sit side by side.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
PYTHON  ?= python3

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
           -Wcast-qual -Wwrite-strings -Wformat=2 -Wundef -Wvla \
           -Wimplicit-fallthrough -Werror
CFLAGS  ?= -O2 -g
# Full RELRO: symbols are bound at start, so a forked child does not pay
# for lazy binding (and the GOT is read-only).
LDFLAGS ?= -Wl,-z,relro,-z,now
# STATIC=1 (the default) links pbx as a static PIE: a process image of 12
# mappings instead of 24, so `--model fork` forks and execs about 6% faster
# and every pbx command starts sooner. STATIC=0 links the shared libc (see
# README, "Building": name services other than files and dns).
STATIC  ?= 1
LINK_MODE := $(if $(filter 1,$(STATIC)),-static-pie,)
# glibc warns on every static link that getaddrinfo may load NSS modules at
# run time; the README says what that means, so only that warning is hidden.
LD_QUIET := -e "Using 'getaddrinfo' in statically linked" \
            -e "libpbx.a(addr.o): in function"

ALL_CFLAGS := -std=c17 -D_GNU_SOURCE -Iinclude $(WARN) $(CFLAGS) -MMD -MP
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer

LIB_SRC   := $(wildcard src/lib/*.c)
LOG_SRC   := $(wildcard src/log/*.c)
PBX_SRC   := $(wildcard src/cli/*.c src/log/*.c src/serve/*.c \
             src/serve/handlers/*.c src/client/*.c)
UNIT_SRC  := $(wildcard tests/unit/*_test.c)
# Formatted and checked by clang-format beside the sources.
FMT_SRC   := include/pbx.h $(LIB_SRC) $(PBX_SRC) \
             $(wildcard src/*/*.h src/serve/handlers/*.h) \
             $(wildcard tests/unit/*.c tests/unit/*.h bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
PBX_OBJ   := $(PBX_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/unit/%)

ASAN_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/asan/obj/%.o)
ASAN_PBX_OBJ := $(PBX_SRC:%.c=$(BUILD)/asan/obj/%.o)
ASAN_LOG_OBJ := $(LOG_SRC:%.c=$(BUILD)/asan/obj/%.o)
# Server parts with no dependency but libpbx (and the log), unit-tested
# and fuzzed on their own: the stage runner and the door's parsers.
PURE_SRC := $(wildcard src/serve/stage.c src/serve/rules.c \
            src/serve/rules_trie.c src/serve/proxy_header.c \
            src/serve/proxy_header_build.c src/serve/ip_limits.c)
ASAN_UNIT_OBJ := $(ASAN_LOG_OBJ) $(PURE_SRC:%.c=$(BUILD)/asan/obj/%.o)

.PHONY: all run test asan unit lint format clean install bench fuzz

all: $(BUILD)/pbx $(BUILD)/libpbx.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(ALL_CFLAGS) $(SAN) -O1 -c -o $@ $<

$(BUILD)/libpbx.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/pbx: $(PBX_OBJ) $(BUILD)/libpbx.a Makefile
	@echo "  LD      $@$(if $(LINK_MODE), ($(LINK_MODE)),)"
	@$(CC) $(CFLAGS) $(LINK_MODE) $(LDFLAGS) -o $@ $(PBX_OBJ) \
	    $(BUILD)/libpbx.a 2>$@.ld; st=$$?; \
	    grep -v $(LD_QUIET) $@.ld >&2; rm -f $@.ld; exit $$st

$(BUILD)/asan/libpbx.a: $(ASAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/asan/pbx: $(ASAN_PBX_OBJ) $(BUILD)/asan/libpbx.a
	$(CC) $(SAN) -o $@ $(ASAN_PBX_OBJ) $(BUILD)/asan/libpbx.a

# Unit tests link libpbx and ASAN_UNIT_OBJ (the log module, src/log, and
# the other parts that need nothing but libpbx); a test of the whole
# server links the rest of src/serve too (UNIT_EXTRA_OBJ).
$(BUILD)/asan/unit/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(ASAN_UNIT_OBJ) \
    $(BUILD)/asan/libpbx.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -O1 -o $@ $< $(UNIT_EXTRA_OBJ) $(ASAN_UNIT_OBJ) \
	    $(BUILD)/asan/libpbx.a

ASAN_SERVE_OBJ := $(filter-out $(ASAN_UNIT_OBJ), \
                  $(filter $(BUILD)/asan/obj/src/serve/%,$(ASAN_PBX_OBJ)))
$(BUILD)/asan/unit/serve_stage_test: UNIT_EXTRA_OBJ := $(ASAN_SERVE_OBJ)
$(BUILD)/asan/unit/serve_stage_test: $(ASAN_SERVE_OBJ)

asan: $(BUILD)/asan/pbx $(UNIT_BIN)
unit: $(UNIT_BIN)

run: $(BUILD)/pbx
	$(BUILD)/pbx serve 127.0.0.1:9234 hello

# Unit tests and the end-to-end suite run against the sanitizer build; the
# runner prints one closing line "N passed, N failed".
test: all asan
	$(PYTHON) tests/run.py --build $(BUILD)

# Side by side with the peers (root: apt-get, unshare -n); about 17 min.
# Writes bench/results.md and bench/results.json. Never part of make test.
bench: $(BUILD)/pbx
	CC=$(CC) $(PYTHON) bench/run.py --pbx $(BUILD)/pbx

# Calls banned by the style guide (rule 37): a name followed by '('.
BANNED := sprintf|strcpy|strcat|strtok|gets|atoi|inet_ntoa|inet_addr|gethostbyname|signal|select
# Layers one way (lib < log < client, serve < cli): tests/lint_layers.py
# prints each include that points up or sideways as FILE:LINE: #include.
lint:
	@if grep -nE '(^|[^_a-zA-Z0-9.>])($(BANNED))[[:space:]]*\(' $(LIB_SRC) $(PBX_SRC); then \
	    echo 'lint: banned function (style guide rule 37)'; exit 1; fi
	@$(PYTHON) tests/lint_layers.py
	clang-format --dry-run --Werror $(FMT_SRC)

format:
	clang-format -i $(FMT_SRC)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/pbx $(DESTDIR)$(PREFIX)/bin/pbx
	install -m 644 $(BUILD)/libpbx.a $(DESTDIR)$(PREFIX)/lib/libpbx.a
	install -m 644 include/pbx.h $(DESTDIR)$(PREFIX)/include/pbx.h

clean:
	rm -rf $(BUILD)

# libFuzzer targets (clang): make fuzz [FUZZ_SECONDS=N]
-include fuzz/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
