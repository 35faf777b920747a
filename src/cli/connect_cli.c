/* SPDX-License-Identifier: MIT */
/* connect_cli.c: `pbx connect`: options in, a call placed. */
#include "../client/client.h"
#include "../log/log.h"
#include "../serve/proxy_header.h"
#include "args.h"
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char connect_usage[] =
    "usage: pbx connect [OPTIONS] ADDRESS [-- PROGRAM [ARG...]]\n"
    "\n"
    "Call ADDRESS (HOST:PORT or [IPV6]:PORT; every address of HOST is tried\n"
    "in turn). Without PROGRAM, relay stdin to the socket and the socket to\n"
    "stdout: at the end of stdin, half-close (send FIN) and keep reading; when\n"
    "the other side closes, exit, even if stdin is still open.\n"
    "With PROGRAM, run it with the socket on fd 6 (read) and fd 7 (write) and\n"
    "PROTO=TCP, TCPLOCALIP, TCPLOCALPORT, TCPREMOTEIP, TCPREMOTEPORT in its\n"
    "environment (UCSPI, as tcpclient); its exit status is pbx's.\n"
    "\n"
    "Options:\n"
    "  -s, --source HOST[:PORT]        call from this address (and port; 0 or\n"
    "                                  none lets the kernel pick)\n"
    "  -t, --connect-timeout SECONDS   give up on an address after this long\n"
    "                                  (e.g. 2 or 0.5; default: the kernel's)\n"
    "      --send-proxy v1|v2          first send a PROXY protocol header\n"
    "                                  naming this call's two ends (as HAProxy's\n"
    "                                  send-proxy and send-proxy-v2)\n"
    "      --proxy-source IP:PORT      name this caller in it instead (relay\n"
    "                                  another's call)\n"
    "  -v, --verbose                   say who answered, from where\n"
    "  -q, --quiet                     errors only\n"
    "      --log-format text|json      every stderr line as key=value text\n"
    "                                  (the default) or as one JSON object\n"
    "      --trace                     narrate every socket call\n"
    "  -h, --help                      this text\n"
    "\n"
    "Exit status: 0 the call ended normally, 1 refused, unreachable, timed out\n"
    "or reset, 2 bad usage.\n";

enum { OPT_TRACE = 256, OPT_LOG_FORMAT, OPT_SEND_PROXY, OPT_PROXY_SOURCE };

static const struct option connect_options[] = {
    {"source", required_argument, NULL, 's'},
    {"connect-timeout", required_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"trace", no_argument, NULL, OPT_TRACE},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"send-proxy", required_argument, NULL, OPT_SEND_PROXY},
    {"proxy-source", required_argument, NULL, OPT_PROXY_SOURCE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct connect_cli {
	struct client_opts o;
	enum log_level level;
	bool trace;
	enum log_format format;
	int proxy_version; /* --send-proxy: 1 or 2; 0: none */
	bool has_proxy_source;
	struct pbx_addr proxy_source;
};

/* The client's preamble: a PROXY header of the chosen version. */
static ssize_t
proxy_preamble(const struct pbx_addr *src, const struct pbx_addr *dst,
    void *buf, size_t size, void *arg)
{
	const struct connect_cli *cli = arg;

	return proxy_header_build(cli->proxy_version, src, dst, buf, size);
}

/* --proxy-source IP:PORT: numeric, as the header carries it. */
static int
proxy_source(struct connect_cli *cli, const char *arg)
{
	struct pbx_hostport hp;

	if (!args_hostport("proxy-source", arg, 0, &hp))
		return EXIT_USAGE;
	if (pbx_addr_parse_ip(hp.host, hp.port, &cli->proxy_source) < 0)
		return cli_bad_value("proxy-source", arg,
		    "expected a numeric IP:PORT or [IPV6]:PORT, not a name");
	cli->has_proxy_source = true;
	return 0;
}

static int
parse_option(void *ctx, int c, const char *arg)
{
	struct connect_cli *cli = ctx;

	switch (c) {
	case 's':
		if (!args_hostport(
			"source", arg, PBX_PARSE_PORT_OPTIONAL, &cli->o.source))
			return EXIT_USAGE;
		cli->o.has_source = true;
		return 0;
	case 't':
		if (!args_seconds(arg, 86400, &cli->o.timeout_ms))
			return cli_bad_value("connect-timeout", arg,
			    "expected seconds, more than 0 and at most 86400");
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
	case OPT_SEND_PROXY:
		if (strcmp(arg, "v1") != 0 && strcmp(arg, "v2") != 0)
			return cli_bad_value(
			    "send-proxy", arg, "expected v1 or v2");
		cli->proxy_version = arg[1] - '0';
		return 0;
	case OPT_PROXY_SOURCE:
		return proxy_source(cli, arg);
	default:
		return EXIT_USAGE;
	}
}

/* After ADDRESS: nothing, or -- PROGRAM [ARG...] (prog NULL: no "--"). */
static int
parse_program(
    struct connect_cli *cli, int nrest, char **rest, int nprog, char **prog)
{
	if (nrest > 0) {
		log_error("unexpected argument '%s' (a program goes after --)",
		    rest[0]);
		return EXIT_USAGE;
	}
	if (prog == NULL)
		return 0;
	if (nprog == 0) {
		log_error("missing PROGRAM after --");
		return EXIT_USAGE;
	}
	cli->o.argv = (const char *const *)prog;
	return 0;
}

int
cli_connect(int argc, char **argv)
{
	struct connect_cli cli = {.level = LOG_NORMAL};
	static const struct args_cmd cmd = {"connect", connect_usage,
	    ":s:t:vqh", connect_options, parse_option, NULL};

	log_init("connect", LOG_NORMAL, false, LOG_FORMAT_TEXT);
	int dash = cli_find_dashes(argc, argv);
	int r = args_parse(&cmd, dash, argv, &cli);
	if (r != ARGS_GO_ON)
		return r;
	/* Every line from here on, usage errors included, in the format. */
	log_init("connect", LOG_NORMAL, false, cli.format);
	if (optind >= dash) {
		log_error("missing ADDRESS (see pbx connect --help)");
		return EXIT_USAGE;
	}
	cli.o.address = argv[optind];
	if (!args_callee(cli.o.address, &cli.o.where))
		return EXIT_USAGE;
	r = parse_program(&cli, dash - optind - 1, argv + optind + 1,
	    dash < argc ? argc - dash - 1 : 0,
	    dash < argc ? argv + dash + 1 : NULL);
	if (r != 0)
		return r;
	if (cli.has_proxy_source && cli.proxy_version == 0) {
		log_error("--proxy-source needs --send-proxy v1|v2");
		return EXIT_USAGE;
	}
	if (cli.proxy_version != 0) {
		cli.o.preamble = proxy_preamble;
		cli.o.preamble_arg = &cli;
		if (cli.has_proxy_source)
			cli.o.preamble_source = &cli.proxy_source;
	}
	log_init("connect", cli.level, cli.trace, cli.format);
	return client_connect(&cli.o) == CLIENT_OK ? EXIT_OK : EXIT_RUNTIME;
}
