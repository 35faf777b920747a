/* SPDX-License-Identifier: MIT */
/*
 * connect.c: `pbx connect`: place the call, then either relay
 * stdin/stdout like netcat (half-close included) or become a program with
 * the socket on fds 6 and 7 (UCSPI, as tcpclient).
 */
#include "../log/event.h"
#include "../log/log.h"
#include "client.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define MAX_ADDRS 16

struct dial_result {
	int err;  /* the error worth reporting */
	int step; /* PBX_DIAL_*, 0 when no address suited the source */
	struct pbx_addr tried;
	const struct pbx_addr *source;
};

/* Dialing from each source candidate in turn, on one loop. */
struct dialing {
	struct pbx_loop *loop;
	const struct pbx_addr *from;
	int nfrom, next; /* source candidates, the next one to try */
	struct pbx_dialer d;
	struct dial_result *res;
	int fd; /* the connected socket, or -1 */
};

/* Dial from the next source candidate; false when none is left. */
static bool
dial_next_source(struct dialing *g)
{
	if (g->next >= (g->nfrom > 0 ? g->nfrom : 1))
		return false;
	g->d.source = g->nfrom > 0 ? &g->from[g->next] : NULL;
	g->next++;
	int r = pbx_dialer_start(g->loop, &g->d);
	if (r < 0) {
		*g->res = (struct dial_result){
		    .err = r, .step = PBX_DIAL_SOCKET, .source = g->d.source};
		return false;
	}
	return true;
}

static void
on_dialed(struct pbx_dialer *d, int fd)
{
	struct dialing *g = d->data;

	if (fd >= 0) {
		g->fd = fd;
		return;
	}
	/* failed_step 0: no target of this source's family. */
	if (d->failed_step != 0) {
		*g->res = (struct dial_result){.err = fd,
		    .step = d->failed_step,
		    .tried = *d->tried,
		    .source = d->source};
		if (d->failed_step != PBX_DIAL_CONNECT)
			return; /* the source itself is unusable */
	}
	dial_next_source(g);
}

/*
 * Try each source candidate in turn (":PORT" gives "::" and "0.0.0.0");
 * the dialer only pairs a source with targets of its own family. The
 * socket stays non-blocking: the relay wants it so, and a program gets it
 * blocking from pbx_exec.
 */
static int
dial_all(const struct client_opts *o, const struct pbx_addr *to, int nto,
    const struct pbx_addr *from, int nfrom, struct dial_result *res)
{
	struct dialing g = {.from = from,
	    .nfrom = nfrom,
	    .d = {.addrs = to,
		.naddrs = (size_t)nto,
		.timeout_ms = o->timeout_ms,
		.trace = log_tracing() ? log_trace_cb : NULL,
		.cb = on_dialed},
	    .res = res,
	    .fd = -1};

	g.d.data = &g;
	*res = (struct dial_result){.err = -EAFNOSUPPORT};
	int r = pbx_loop_new(&g.loop);
	if (r < 0) {
		*res = (struct dial_result){.err = r, .step = PBX_DIAL_SOCKET};
		return r;
	}
	if (dial_next_source(&g))
		r = pbx_loop_run(g.loop);
	if (g.fd < 0 && r < 0) {
		pbx_dialer_cancel(&g.d);
		*res = (struct dial_result){
		    .err = r, .step = PBX_DIAL_SOCKET, .source = g.d.source};
	}
	pbx_loop_free(g.loop);
	return g.fd >= 0 ? g.fd : res->err;
}

static void
report_dial(const struct client_opts *o, const struct dial_result *res)
{
	char text[PBX_ADDR_STRLEN];

	switch (res->step) {
	case PBX_DIAL_SOCKET:
	case PBX_DIAL_BIND:
		if (res->source == NULL) {
			log_error(
			    "dial %s: %s", o->address, pbx_strerror(res->err));
			return;
		}
		pbx_addr_format(res->source, text, sizeof text);
		log_error("%s %s: %s",
		    res->step == PBX_DIAL_BIND ? "bind" : "socket", text,
		    pbx_strerror(res->err));
		return;
	case PBX_DIAL_CONNECT:
		pbx_addr_format(&res->tried, text, sizeof text);
		log_error("dial %s: %s", text, pbx_strerror(res->err));
		return;
	default:
		log_error(
		    "dial %s: no address of the source's family", o->address);
		return;
	}
}

static int
resolve(const struct pbx_hostport *hp, int flags, struct pbx_addr *out)
{
	int n = pbx_addr_resolve(hp, flags, out, MAX_ADDRS);
	if (n < 0)
		log_error("resolve %s: %s", hp->host, pbx_strerror(n));
	return n;
}

/* The call is placed: who answered, from which local address. */
static void
emit_connected(int fd, struct pbx_addr *remote)
{
	struct pbx_addr local;

	if (pbx_addr_remote(fd, remote) < 0)
		remote->len = 0;
	if (log_level() < LOG_VERBOSE || pbx_addr_local(fd, &local) < 0)
		return;
	log_emit(&(struct event){
	    .kind = EVENT_CONNECTED, .remote = remote, .local = &local});
}

/* The conversation is over: the bytes each way, how long, how it ended. */
static void
emit_end(const struct pbx_addr *remote, const struct pbx_relay_stats *st,
    uint64_t ms, int err)
{
	if (log_level() < LOG_VERBOSE)
		return;
	log_emit(&(struct event){.kind = EVENT_END,
	    .remote = remote->len > 0 ? remote : NULL,
	    .has_bytes = true,
	    .bytes_in = st->from_socket,
	    .bytes_out = st->to_socket,
	    .has_ms = true,
	    .ms = ms,
	    .end = event_end_of(err),
	    .err = err});
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Become the program: socket on 6 and 7, the caller's view in TCP*. */
static enum client_status
run_program(const struct client_opts *o, int fd)
{
	struct pbx_addr local, remote;
	struct pbx_env env;
	int r = pbx_addr_local(fd, &local);

	if (r == 0)
		r = pbx_addr_remote(fd, &remote);
	if (r == 0)
		r = pbx_env_init(&env, NULL);
	if (r == 0) {
		pbx_env_set_tcp(&env, &local, &remote);
		struct pbx_spawn_opts so = {.argv = o->argv,
		    .envp = env.envp,
		    .sock_fd = fd,
		    .layout = PBX_FDS_CLIENT};
		r = pbx_exec(&so);
		pbx_env_fini(&env);
	}
	log_error("run %s: %s", o->argv[0], pbx_strerror(r));
	return CLIENT_FAILED;
}

static enum client_status
relay(const struct client_opts *o, int fd, const struct pbx_addr *remote)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	struct pbx_relay_stats st;
	uint64_t t0 = now_ms();
	int where = 0;

	/* A reader of our stdout that goes away ends the relay, quietly. */
	sigaction(SIGPIPE, &ign, NULL);
	int r = pbx_relay(STDIN_FILENO, STDOUT_FILENO, fd, 0, &st, &where);
	close(fd);
	bool quiet_end = r == -EPIPE && where == 0; /* stdout's reader left */
	emit_end(remote, &st, now_ms() - t0, quiet_end ? 0 : r);
	if (r == 0 || quiet_end)
		return CLIENT_OK;
	if (where == 1)
		log_error("connection %s: %s", o->address, pbx_strerror(r));
	else
		log_error("relay stdin/stdout: %s", pbx_strerror(r));
	return CLIENT_FAILED;
}

enum client_status
client_connect(const struct client_opts *o)
{
	struct pbx_addr to[MAX_ADDRS], from[MAX_ADDRS], remote;
	struct dial_result res;
	int nfrom = 0;

	int nto = resolve(&o->where, 0, to);
	if (nto < 0)
		return CLIENT_FAILED;
	if (o->has_source) {
		nfrom = resolve(&o->source, PBX_RESOLVE_PASSIVE, from);
		if (nfrom < 0)
			return CLIENT_FAILED;
	}
	int fd = dial_all(o, to, nto, from, nfrom, &res);
	if (fd < 0) {
		report_dial(o, &res);
		return CLIENT_FAILED;
	}
	emit_connected(fd, &remote);
	if (o->argv != NULL)
		return run_program(o, fd);
	return relay(o, fd, &remote);
}
