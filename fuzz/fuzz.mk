# fuzz/fuzz.mk: libFuzzer targets, included by the Makefile (see fuzz/README.md).
#   make fuzz [FUZZ_SECONDS=20]  every fuzz/NAME_fuzz.c: build $(BUILD)/fuzz/NAME,
#                                replay fuzz/corpus/NAME/, then fuzz FUZZ_SECONDS
#   make fuzz-NAME               one target; FUZZ_SECONDS=0 replays only
#   make fuzz-build              build the targets, run nothing
# A crash, leak, timeout or out-of-memory fails make with a line naming the
# target; the input that did it is in $(BUILD)/fuzz/NAME.artifacts/.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
# Per input: 10 s is a hang, 2 GiB a leak; one process per target.
FUZZ_OPTS    ?= -rss_limit_mb=2048 -timeout=10
# Extra libFuzzer flags for one target: FUZZ_FLAGS_NAME.
FUZZ_FLAGS_proxy_header ?= -max_len=8192

FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Iinclude -g -O1 $(WARN) -MMD -MP \
               -fsanitize=address,undefined -fno-sanitize-recover=all

FUZZ_SRC   := $(wildcard fuzz/*_fuzz.c)
FUZZ_NAMES := $(FUZZ_SRC:fuzz/%_fuzz.c=%)
FUZZ_BIN   := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)
FUZZ_RUNS  := $(FUZZ_NAMES:%=fuzz-%)
# The code under test, instrumented for coverage; an archive, so a target
# links only the objects it needs.
FUZZ_LIB_SRC := $(sort $(LIB_SRC) $(LOG_SRC) $(PURE_SRC))
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_LIB     := $(BUILD)/fuzz/libpbx-fuzz.a

.PHONY: fuzz-build $(FUZZ_RUNS)

fuzz: $(FUZZ_RUNS)
fuzz-build: $(FUZZ_BIN)

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	@$(AR) rcs $@ $^

$(FUZZ_BIN): $(BUILD)/fuzz/%: fuzz/%_fuzz.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD fuzz $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB)

# Replay the committed seeds (an old crash kept there fails here), then
# fuzz with a work corpus (written) beside the seeds (read only). The full
# libFuzzer output goes to $(BUILD)/fuzz/NAME.log; on a finding its tail is
# shown and make stops.
define fuzz_run
set -u; bin=$(BUILD)/fuzz/$(1); seeds=fuzz/corpus/$(1); \
work=$(BUILD)/fuzz/$(1).corpus; art=$(BUILD)/fuzz/$(1).artifacts; \
log=$(BUILD)/fuzz/$(1).log; opts="$(FUZZ_OPTS) $(FUZZ_FLAGS_$(1)) -artifact_prefix=$$art/"; \
mkdir -p $$seeds $$work $$art; : > $$log; \
failed() { tail -n 40 $$log | sed 's/^/    /'; \
    echo "fuzz: $(1): FAILED while $$1 (log $$log)"; \
    f=$$(sed -n 's/.*Test unit written to //p' $$log | tail -n 1); \
    [ -n "$$f" ] || f=$$(sed -n 's/^Running: //p' $$log | tail -n 1); \
    [ -z "$$f" ] || echo "fuzz: $(1): input $$f; replay: $$bin $$f"; \
    exit 1; }; \
nseeds=$$(find $$seeds -type f | wc -l); \
then=$$([ "$(FUZZ_SECONDS)" = 0 ] && echo " only" || echo ", then $(FUZZ_SECONDS) s"); \
echo "  FUZZ    $(1): replay $$nseeds seed(s)$$then"; \
if [ $$nseeds -gt 0 ]; then \
    find $$seeds -type f -print0 | sort -z | xargs -0 $$bin $$opts >>$$log 2>&1 \
        || failed "replaying $$seeds"; fi; \
if [ "$(FUZZ_SECONDS)" != 0 ]; then \
    $$bin $$opts -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
        $$work $$seeds >>$$log 2>&1 || failed "fuzzing"; \
    fstat() { sed -n "s/^stat::$$1: *//p" $$log | tail -n 1; }; \
    runs=$$(fstat number_of_executed_units); rate=$$(fstat average_exec_per_sec); \
    new=$$(fstat new_units_added); rss=$$(fstat peak_rss_mb); \
    units=$$(find $$work -type f | wc -l); \
    echo "  FUZZ    $(1): $$runs runs in $(FUZZ_SECONDS) s ($$rate/s), $$new new inputs ($$units in $$work), peak RSS $$rss MB: no findings"; \
fi
endef

$(FUZZ_RUNS): fuzz-%: $(BUILD)/fuzz/%
	@$(call fuzz_run,$*)
