/* SPDX-License-Identifier: MIT */
/*
 * ip_limits.h: --max-per-ip and --per-ip-prefix: the live connections of each
 * client address (or network), counted in one process or shared by the
 * processes of --workers.
 *
 * A table belongs to one server: serial and event count in their own
 * process, the fork parent counts its children, and a --workers supervisor
 * makes one shared table before it forks the workers, which count into it
 * as worker 0..N-1. Every call takes the table's lock in shared mode and
 * none blocks otherwise; none allocates after serve_limits_new. A private
 * table (workers 0) is not for a signal handler: give on the loop's
 * SIGCHLD callback, not in an asynchronous handler.
 */
#ifndef SERVE_LIMITS_H
#define SERVE_LIMITS_H

#include "pbx.h"

#include <stddef.h>

/*
 * A worker's count of one key lives in 20 bits of a word that also names
 * the worker (12 bits), so a key's entry needs min(workers, N) words, not
 * one per worker (see limits.c).
 */
#define SERVE_LIMITS_MAX_PER_KEY ((1u << 20) - 1)
#define SERVE_LIMITS_MAX_WORKERS (1u << 12)
/* Slots are 32-bit indices and a table's size is at most twice this. */
#define SERVE_LIMITS_MAX_CAPACITY ((size_t)1 << 30)

struct serve_limits;

struct serve_limits_opts {
	unsigned max_per_key; /* N: 1..SERVE_LIMITS_MAX_PER_KEY */
	unsigned prefix4;     /* count IPv4 callers per /prefix4: 0..32 */
	unsigned prefix6;     /* and IPv6 callers per /prefix6: 0..128 */
	/* The most connections live at once, all processes together
	 * (max_conns x processes): it bounds the keys, so the table is
	 * sized for it once and never grows. */
	size_t capacity;
	/* 0: one process, private memory; else the number of worker
	 * processes that share the table (it is then MAP_SHARED and
	 * inherited by fork). */
	unsigned workers;
};

/*
 * Make a table (o is read, not kept). Returns 0 and *out (free it with
 * serve_limits_free), -EINVAL for an option out of range, -ENOMEM, or the
 * error of setting up the process-shared lock.
 */
int serve_limits_new(
    struct serve_limits **out, const struct serve_limits_opts *o);

/*
 * Unmap and free this process's handle. In shared mode the other
 * processes' mappings stay valid: each process frees its own inherited
 * handle (or simply exits).
 */
void serve_limits_free(struct serve_limits *t);

/*
 * Count a new connection from a, accepted by worker w (always 0 for a
 * private table). Returns the key's live count including this one (1..N:
 * TCPCONCURRENCY), or, with nothing counted: -EBUSY when that would be
 * more than N, -ENOSPC when the table already holds capacity keys (the
 * caller's capacity was wrong), -EINVAL for a w out of range,
 * -EAFNOSUPPORT for an address that is neither IPv4 nor IPv6, or another
 * -errno if the lock cannot be taken (a bug: not seen in practice).
 */
int serve_limits_take(
    struct serve_limits *t, unsigned w, const struct pbx_addr *a);

/*
 * The connection from a that worker w counted has ended: exactly one give
 * per successful take. A give that matches no count of w is ignored, so a
 * bug in the caller cannot take another worker's count away.
 */
void serve_limits_give(
    struct serve_limits *t, unsigned w, const struct pbx_addr *a);

/*
 * Worker w has died (or is being replaced): drop every count it held, and
 * every key left with none. For the supervisor, after reaping w and before
 * starting its replacement under the same number. Costs one pass over the
 * table.
 */
void serve_limits_forget_worker(struct serve_limits *t, unsigned w);

/* The live count of a's key, all workers together (0 if none). */
unsigned serve_limits_count(
    const struct serve_limits *t, const struct pbx_addr *a);

/* What serve_limits_stats reports: for metrics and tests. */
struct serve_limits_stats {
	size_t keys;    /* entries in the table */
	size_t slots;   /* the table's size (a power of two) */
	size_t longest; /* the longest probe: slots from an entry's home */
	/* Entries with no count: a worker died between a give and the
	 * removal; forget_worker of that worker removes them. */
	size_t idle;
	/* Entries a lookup would not find where they are, plus one if the
	 * key count is off: 0 unless the table is damaged. */
	size_t broken;
	/* Times the lock was found held by a dead process and the table
	 * repaired. */
	unsigned repairs;
};

/* Look at every slot (one pass: not for the per-connection path). */
void serve_limits_stats(
    const struct serve_limits *t, struct serve_limits_stats *out);

/*
 * For tests: the points at which the table is between two writes that
 * belong together, with the lock held. A process that dies there leaves
 * the state that the next process to take the lock repairs.
 */
enum serve_limits_step {
	SERVE_LIMITS_LOCKED,   /* the lock is held, nothing written yet */
	SERVE_LIMITS_INSERT,   /* a new entry written, not yet in use */
	SERVE_LIMITS_INSERTED, /* in use, the key count not yet raised */
	SERVE_LIMITS_COUNTED,  /* a worker's count changed */
	SERVE_LIMITS_DELETE,   /* a removal recorded, its slot is the hole */
	SERVE_LIMITS_MOVE,     /* an entry copied into the hole */
	SERVE_LIMITS_SHIFTED,  /* the hole moved to where that entry was */
	SERVE_LIMITS_CLEARED,  /* the last hole emptied, removal recorded */
	SERVE_LIMITS_DELETED,  /* removal done, the key count not yet lowered */
};

typedef void (*serve_limits_hook_fn)(void *arg, enum serve_limits_step step);

/*
 * For tests: call fn(arg, step) at each step above, in this process only
 * (the hook is not shared with the other processes). fn NULL: none.
 */
void serve_limits_set_hook(
    struct serve_limits *t, serve_limits_hook_fn fn, void *arg);

#endif /* SERVE_LIMITS_H */
