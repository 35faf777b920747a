/* SPDX-License-Identifier: MIT */
/* serve_cli.c: `pbx serve`: options in, a running server out. */
#include "../log/log.h"
#include "../serve/serve.h"
#include "args.h"
#include "cli.h"
#include "serve_guard.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char serve_usage[] =
    "usage: pbx serve [OPTIONS] ADDRESS [hello|echo|discard | -- PROGRAM [ARG...]]\n"
    "\n"
    "Listen on ADDRESS and answer every caller with a handler:\n"
    "  hello     write \"Hello, person from ADDR\" and close (the default)\n"
    "  echo      send back every byte until the caller half-closes (RFC 862)\n"
    "  discard   read and drop everything (RFC 863)\n"
    "  -- PROGRAM [ARG...]\n"
    "            run PROGRAM per connection with the socket on fds 0 and 1 and\n"
    "            PROTO=TCP, TCPLOCALIP, TCPLOCALPORT, TCPREMOTEIP, TCPREMOTEPORT\n"
    "            in its environment (UCSPI, as tcpserver)\n"
    "\n"
    "ADDRESS is HOST:PORT, [IPV6]:PORT or :PORT (every address, IPv4 and IPv6).\n"
    "Port 0 lets the kernel pick; the line \"pbx: listening on ADDR\" on stderr\n"
    "tells the real one, once the server is ready.\n"
    "\n"
    "Options:\n"
    "  -m, --model MODEL    event: every caller in one process, one epoll loop\n"
    "                       (the default); serial: one caller at a time;\n"
    "                       fork: a process per caller\n"
    "  -c, --max-conns N    at most N callers at once; at N, stop accepting until\n"
    "                       one ends (1-1000000; default 10000, fork: 500)\n"
    "  -b, --backlog N      listen backlog (1-65535, default 4096)\n"
    "  -w, --workers N      run N copies of the model (auto: one per CPU), each\n"
    "                       accepting on its own SO_REUSEPORT socket; a\n"
    "                       supervisor restarts any that dies\n"
    "\n"
    "Deadlines (SECONDS: a decimal like 2 or 0.5; 0 turns a limit off):\n"
    "      --idle-timeout SECONDS\n"
    "                       end a call that moved no byte either way for this\n"
    "                       long (default 60; a program is stopped as below)\n"
    "      --timeout SECONDS\n"
    "                       end any call after this long in all (default 0: none)\n"
    "      --kill-grace SECONDS\n"
    "                       a program past a deadline gets SIGTERM, then SIGKILL\n"
    "                       this much later (default 5)\n"
    "      --keepalive IDLE,INTERVAL,COUNT|off\n"
    "                       TCP keepalive probes: after IDLE seconds of silence,\n"
    "                       every INTERVAL, COUNT times (default 60,10,6)\n"
    "      --user-timeout SECONDS\n"
    "                       TCP_USER_TIMEOUT: drop a peer that leaves sent data\n"
    "                       unacknowledged this long (default 0: the kernel's)\n"
    "\n";

static const char serve_usage_more[] =
    "The door (checked on the caller's real address, before a byte is read):\n"
    "      --rules FILE     access rules, one per line: CIDR allow|deny [VAR=value\n"
    "                       ...]; the longest prefix decides, a caller no rule\n"
    "                       covers is denied, VARs go to the program; read again\n"
    "                       on SIGHUP (a file that does not parse is not taken)\n"
    "      --max-per-ip N   at most N calls at once from one address (default 0:\n"
    "                       no limit); TCPCONCURRENCY tells a program the count\n"
    "      --per-ip-prefix V4,V6\n"
    "                       count per network instead: IPv4 /V4, IPv6 /V6\n"
    "                       (default 32,128: per address)\n"
    "      --reject-message TEXT\n"
    "                       sent (with a newline) to a caller over the limit\n"
    "      --proxy-protocol[=v1|v2]\n"
    "                       a call from a trusted proxy starts with a PROXY\n"
    "                       header (v1 or v2; both without =) naming the client:\n"
    "                       rules, limits, log, greeting and program see it\n"
    "      --proxy-from CIDR[,CIDR...]\n"
    "                       the proxies whose header is believed (required with\n"
    "                       --proxy-protocol); others are served as they are\n"
    "      --proxy-required refuse calls that do not come through those proxies\n"
    "      --proxy-timeout SECONDS\n"
    "                       the header must be in within this long (default 5)\n"
    "\n"
    "Output:\n"
    "  -v, --verbose        a line per connection: accept, end, exit status\n"
    "  -q, --quiet          errors only (and the listening line, which says\n"
    "                       the server is ready)\n"
    "      --log-format text|json\n"
    "                       every stderr line as key=value text (the\n"
    "                       default) or as one JSON object\n"
    "      --trace          narrate every socket call as it happens\n"
    "  -h, --help           this text\n"
    "\n"
    "SIGTERM or SIGINT stops the server (exit 0). Exit status: 0 stopped,\n"
    "1 could not listen (address in use, unknown host, ...), 2 bad usage.\n";

enum { OPT_TRACE = 256, OPT_LOG_FORMAT };

static const struct option serve_options[] = {
    {"model", required_argument, NULL, 'm'},
    {"max-conns", required_argument, NULL, 'c'},
    {"backlog", required_argument, NULL, 'b'},
    {"workers", required_argument, NULL, 'w'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"trace", no_argument, NULL, OPT_TRACE},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
    {"user-timeout", required_argument, NULL, OPT_USER_TIMEOUT},
    {"rules", required_argument, NULL, OPT_RULES},
    {"max-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
    {"per-ip-prefix", required_argument, NULL, OPT_PER_IP_PREFIX},
    {"reject-message", required_argument, NULL, OPT_REJECT_MESSAGE},
    {"proxy-protocol", optional_argument, NULL, OPT_PROXY_PROTOCOL},
    {"proxy-from", required_argument, NULL, OPT_PROXY_FROM},
    {"proxy-required", no_argument, NULL, OPT_PROXY_REQUIRED},
    {"proxy-timeout", required_argument, NULL, OPT_PROXY_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct serve_cli {
	struct serve_opts o;
	enum log_level level;
	bool trace;
	enum log_format format;
	bool max_conns_given; /* else the model's default */
};

static int
parse_option(void *ctx, int c, const char *arg)
{
	struct serve_cli *cli = ctx;
	unsigned long n;

	switch (c) {
	case 'm':
		if (strcmp(arg, "serial") == 0)
			cli->o.model = SERVE_SERIAL;
		else if (strcmp(arg, "fork") == 0)
			cli->o.model = SERVE_FORK;
		else if (strcmp(arg, "event") == 0)
			cli->o.model = SERVE_EVENT;
		else
			return cli_bad_value(
			    "model", arg, "expected serial, fork or event");
		return 0;
	case 'c':
		if (!args_number(arg, 1, 1000000, &n))
			return cli_bad_value("max-conns", arg,
			    "expected a number from 1 to 1000000");
		cli->o.max_conns = (unsigned)n;
		cli->max_conns_given = true;
		return 0;
	case 'b':
		if (!args_number(arg, 1, 65535, &n))
			return cli_bad_value("backlog", arg,
			    "expected a number from 1 to 65535");
		cli->o.backlog = (int)n;
		return 0;
	case 'w':
		if (strcmp(arg, "auto") == 0) {
			long cpus = sysconf(_SC_NPROCESSORS_ONLN);
			cli->o.workers = cpus > 0 ? (unsigned)cpus : 1;
		} else if (args_number(arg, 1, 1024, &n)) {
			cli->o.workers = (unsigned)n;
		} else {
			return cli_bad_value("workers", arg,
			    "expected auto or a number from 1 to 1024");
		}
		return 0;
	case 'v':
		cli->level = LOG_VERBOSE;
		return 0;
	case 'q':
		cli->level = LOG_QUIET;
		return 0;
	case OPT_TRACE:
		cli->trace = true;
		return 0;
	case OPT_LOG_FORMAT:
		if (!log_format_parse(arg, &cli->format))
			return cli_bad_value(
			    "log-format", arg, "expected text or json");
		return 0;
	default:
		return serve_guard_option(&cli->o, c, arg);
	}
}

static const struct serve_handler *
find_handler(const char *name)
{
	static const struct serve_handler *const builtin[] = {
	    &serve_hello, &serve_echo, &serve_discard};

	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
		if (strcmp(builtin[i]->name, name) == 0)
			return builtin[i];
	return NULL;
}

/*
 * What follows ADDRESS: nothing, a handler name, or -- PROGRAM [ARG...].
 * rest holds the words before "--"; prog those after it (NULL: no "--").
 */
static int
parse_handler(
    struct serve_cli *cli, int nrest, char **rest, int nprog, char **prog)
{
	cli->o.handler = &serve_hello;
	if (prog != NULL) {
		if (nrest > 0) {
			log_error(
			    "unexpected argument '%s': give a handler or -- PROGRAM, not both",
			    rest[0]);
			return EXIT_USAGE;
		}
		if (nprog == 0) {
			log_error("missing PROGRAM after --");
			return EXIT_USAGE;
		}
		cli->o.handler = &serve_exec;
		cli->o.argv = (const char *const *)prog;
		return 0;
	}
	if (nrest == 0)
		return 0;
	cli->o.handler = find_handler(rest[0]);
	if (cli->o.handler == NULL) {
		log_error(
		    "unknown handler '%s': expected hello, echo, discard or -- PROGRAM",
		    rest[0]);
		return EXIT_USAGE;
	}
	if (nrest > 1) {
		log_error("unexpected argument '%s' after handler '%s'",
		    rest[1], rest[0]);
		return EXIT_USAGE;
	}
	return 0;
}

/* Everything after the options: ADDRESS, the handler, the server. */
static int
serve_main(struct serve_cli *cli, int argc, char **argv, int dash)
{
	/* A process per caller costs far more than a record per caller. */
	if (!cli->max_conns_given)
		cli->o.max_conns = cli->o.model == SERVE_FORK ? 500 : 10000;
	/* Every line from here on, usage errors included, in the format. */
	log_init("serve", LOG_NORMAL, false, cli->format);
	if (optind >= dash) {
		log_error("missing ADDRESS (see pbx serve --help)");
		return EXIT_USAGE;
	}
	cli->o.address = argv[optind];
	if (!args_hostport("address", cli->o.address, 0, &cli->o.where))
		return EXIT_USAGE;
	int r = parse_handler(cli, dash - optind - 1, argv + optind + 1,
	    dash < argc ? argc - dash - 1 : 0,
	    dash < argc ? argv + dash + 1 : NULL);
	if (r == 0)
		r = serve_guard_check(&cli->o);
	if (r != 0)
		return r;
	log_init("serve", cli->level, cli->trace, cli->format);
	return serve_run(&cli->o) == 0 ? EXIT_OK : EXIT_RUNTIME;
}

int
cli_serve(int argc, char **argv)
{
	struct serve_cli cli = {
	    .o = {.model = SERVE_EVENT, .backlog = 4096},
	    .level = LOG_NORMAL,
	};
	static const struct args_cmd cmd = {"serve", serve_usage,
	    ":m:c:b:w:vqh", serve_options, parse_option, serve_usage_more};

	serve_guard_defaults(&cli.o);
	log_init("serve", LOG_NORMAL, false, LOG_FORMAT_TEXT);
	int dash = cli_find_dashes(argc, argv);
	int r = args_parse(&cmd, dash, argv, &cli);
	if (r == ARGS_GO_ON)
		r = serve_main(&cli, argc, argv, dash);
	serve_guard_fini(&cli.o); /* what the options loaded */
	return r;
}
