/* SPDX-License-Identifier: MIT */
/*
 * connect.c: `pbx connect`: place the call, then either relay
 * stdin/stdout like netcat (half-close included) or become a program with
 * the socket on fds 6 and 7 (UCSPI, as tcpclient). Dialing and relaying
 * share one loop: the dial's completion starts the relay.
 */
#include "../log/event.h"
#include "../log/log.h"
#include "client.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#define MAX_ADDRS 16

struct dial_result {
	int err;  /* the error worth reporting */
	int step; /* PBX_DIAL_*, 0 when no address suited the source */
	struct pbx_addr tried;
	const struct pbx_addr *source;
};

/*
 * One call on one loop: dialing from each source candidate in turn, then
 * the relay between stdin/stdout (side A) and the socket (side B).
 */
struct call {
	const struct client_opts *o;
	struct pbx_loop *loop;
	const struct pbx_addr *from;
	int nfrom, next; /* source candidates, the next one to try */
	struct pbx_dialer d;
	struct dial_result res;
	int fd; /* the connected socket (the sock stream's), or -1 */
	struct pbx_addr remote;
	struct pbx_stream in, out, sock;
	struct pbx_relay r;
	int open;     /* streams not closed yet */
	bool relayed; /* the relay has ended, or could not start */
	uint64_t t0;  /* when the relay started (the loop's clock) */
	uint64_t ms;  /* how long it ran */
	int err;      /* how it ended: 0 or -errno, */
	int where;    /* and on which side (0 stdin/stdout, 1 the socket) */
	struct pbx_relay_stats st;
	bool preamble_failed; /* said so, and closed the socket */
};

static void start_relay(struct call *c);

/* Dial from the next source candidate; false when none is left. */
static bool
dial_next_source(struct call *c)
{
	if (c->next >= (c->nfrom > 0 ? c->nfrom : 1))
		return false;
	c->d.source = c->nfrom > 0 ? &c->from[c->next] : NULL;
	c->next++;
	int r = pbx_dialer_start(c->loop, &c->d);
	if (r < 0) {
		c->res = (struct dial_result){
		    .err = r, .step = PBX_DIAL_SOCKET, .source = c->d.source};
		return false;
	}
	return true;
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

/* The preamble goes first, whole (it is short: the socket takes it). */
static int
send_preamble(
    const struct client_opts *o, int fd, const struct pbx_addr *remote)
{
	struct pbx_addr local;
	char buf[512];

	if (o->preamble == NULL)
		return 0;
	int r = pbx_addr_local(fd, &local);
	if (r < 0)
		return r;
	const struct pbx_addr *src =
	    o->preamble_source != NULL ? o->preamble_source : &local;
	ssize_t n = o->preamble(src, remote, buf, sizeof buf, o->preamble_arg);
	if (n < 0)
		return (int)n;
	n = pbx_write_all(fd, buf, (size_t)n);
	return n < 0 ? (int)n : 0;
}

static void
on_dialed(struct pbx_dialer *d, int fd)
{
	struct call *c = d->data;

	if (fd >= 0) {
		c->fd = fd;
		emit_connected(fd, &c->remote);
		int r = send_preamble(c->o, fd, &c->remote);
		if (r < 0) {
			log_error("send PROXY header to %s: %s", c->o->address,
			    pbx_strerror(r));
			close(fd);
			c->fd = -1;
			c->preamble_failed = true;
			pbx_loop_stop(c->loop);
			return;
		}
		if (c->o->argv != NULL)
			pbx_loop_stop(c->loop); /* the program takes it over */
		else
			start_relay(c);
		return;
	}
	/* failed_step 0: no target of this source's family. */
	if (d->failed_step != 0) {
		c->res = (struct dial_result){.err = fd,
		    .step = d->failed_step,
		    .tried = *d->tried,
		    .source = d->source};
		if (d->failed_step != PBX_DIAL_CONNECT)
			return; /* the source itself is unusable */
	}
	dial_next_source(c);
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

/* The last stream is closed: nothing of the call is left on the loop. */
static void
on_closed(struct pbx_stream *s, int status)
{
	struct call *c = s->data;

	(void)status;
	if (--c->open == 0)
		pbx_loop_stop(c->loop);
}

/*
 * Close the streams, not only let go of their fds as pbx_relay did: after
 * an error a relay write may still be queued, and only its cancellation,
 * delivered from the loop, frees the relay's buffer (pbx_relay freed it
 * itself, from inside relay.c). stdin and stdout close as they would at
 * exit a moment later; the socket closes where pbx_relay's caller closed
 * it. The loop stops once the last close is delivered.
 */
static void
close_streams(struct call *c)
{
	pbx_stream_close(&c->in);
	pbx_stream_close(&c->out);
	pbx_stream_close(&c->sock);
}

static void
relay_ended(struct call *c, int err, int where)
{
	c->relayed = true;
	c->err = err;
	c->where = where;
	c->st = (struct pbx_relay_stats){
	    .to_socket = c->r.a_to_b, .from_socket = c->r.b_to_a};
	c->ms = pbx_loop_now(c->loop) - c->t0;
	close_streams(c);
}

static void
on_relay_end(struct pbx_relay *r)
{
	struct call *c = r->data;

	/* report_relay's closes can still end it: its end is told. */
	if (!c->relayed)
		relay_ended(c, r->err, r->where);
}

/*
 * What pbx_relay did on a loop of its own, on the call's loop: stdin and
 * stdout as they are (a blocking terminal makes the loop wait on it, as
 * netcat does; a regular file is fed as always ready), the socket
 * non-blocking as the dialer hands it over, and netcat's end: the peer's
 * close ends the call even while stdin is open.
 */
static void
start_relay(struct call *c)
{
	static const struct pbx_stream_ops ops = {.close = on_closed};
	struct sigaction ign = {.sa_handler = SIG_IGN};

	/* A reader of our stdout that goes away ends the relay, quietly. */
	sigaction(SIGPIPE, &ign, NULL);
	c->t0 = pbx_loop_now(c->loop);
	pbx_stream_init(&c->in, c->loop, STDIN_FILENO, NULL, &ops);
	pbx_stream_init(&c->out, c->loop, STDOUT_FILENO, NULL, &ops);
	pbx_stream_init(&c->sock, c->loop, c->fd, NULL, &ops);
	c->in.data = c->out.data = c->sock.data = c;
	c->open = 3;
	c->r = (struct pbx_relay){.a_in = &c->in,
	    .a_out = &c->out,
	    .b_in = &c->sock,
	    .b_out = &c->sock,
	    .flags = PBX_RELAY_END_WITH_B,
	    .cb = on_relay_end,
	    .data = c};
	int e = pbx_relay_start(&c->r);
	/* No callback comes; a failure before any stream was read
	 * (-ENOMEM) counts as the socket's, as pbx_relay had it. */
	if (e < 0)
		relay_ended(c, e, c->r.err != 0 ? c->r.where : 1);
}

/*
 * The relay's outcome as the user sees it. A loop that ended under a
 * running relay (epoll_wait failed, or nothing was left that could move)
 * ends it with the loop's result, on the socket's side, as pbx_relay did;
 * the relay cannot be finished from here, so its bytes are the streams'.
 */
static enum client_status
report_relay(struct call *c, int loop_err)
{
	const struct client_opts *o = c->o;

	if (!c->relayed) {
		c->relayed = true;
		c->err = loop_err;
		c->where = 1;
		c->st = (struct pbx_relay_stats){.to_socket = c->sock.bytes_out,
		    .from_socket = c->out.bytes_out};
		c->ms = pbx_loop_now(c->loop) - c->t0;
		close_streams(c);
	}
	bool quiet_end = c->err == -EPIPE && c->where == 0; /* stdout left */
	emit_end(&c->remote, &c->st, c->ms, quiet_end ? 0 : c->err);
	if (c->err == 0 || quiet_end)
		return CLIENT_OK;
	if (c->where == 1)
		log_error(
		    "connection %s: %s", o->address, pbx_strerror(c->err));
	else
		log_error("relay stdin/stdout: %s", pbx_strerror(c->err));
	return CLIENT_FAILED;
}

/*
 * Try each source candidate in turn (":PORT" gives "::" and "0.0.0.0");
 * the dialer only pairs a source with targets of its own family. The
 * socket stays non-blocking: the relay wants it so, and a program gets it
 * blocking from pbx_exec.
 */
enum client_status
client_connect(const struct client_opts *o)
{
	struct pbx_addr to[MAX_ADDRS], from[MAX_ADDRS];
	int nfrom = 0;

	int nto = resolve(&o->where, 0, to);
	if (nto < 0)
		return CLIENT_FAILED;
	if (o->has_source) {
		nfrom = resolve(&o->source, PBX_RESOLVE_PASSIVE, from);
		if (nfrom < 0)
			return CLIENT_FAILED;
	}
	struct call c = {.o = o,
	    .from = from,
	    .nfrom = nfrom,
	    .d = {.addrs = to,
		.naddrs = (size_t)nto,
		.timeout_ms = o->timeout_ms,
		.trace = log_tracing() ? log_trace_cb : NULL,
		.cb = on_dialed},
	    .res = {.err = -EAFNOSUPPORT},
	    .fd = -1};

	c.d.data = &c;
	int r = pbx_loop_new(&c.loop);
	if (r < 0) {
		/* Out of fds or memory here is out of them for a socket. */
		c.res = (struct dial_result){.err = r, .step = PBX_DIAL_SOCKET};
		report_dial(o, &c.res);
		return CLIENT_FAILED;
	}
	if (dial_next_source(&c))
		r = pbx_loop_run(c.loop);
	enum client_status st = CLIENT_FAILED;
	if (c.preamble_failed) {
		/* said why */
	} else if (c.fd < 0) {
		if (r < 0) {
			pbx_dialer_cancel(&c.d);
			c.res = (struct dial_result){.err = r,
			    .step = PBX_DIAL_SOCKET,
			    .source = c.d.source};
		}
		report_dial(o, &c.res);
	} else if (o->argv == NULL) {
		st = report_relay(&c, r);
	}
	pbx_loop_free(c.loop);
	if (c.fd >= 0 && o->argv != NULL)
		st = run_program(o, c.fd);
	return st;
}
