/* SPDX-License-Identifier: MIT */
/* main.c: pbx COMMAND ...: dispatch only. */
#include "../log/log.h"
#include "args.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char main_usage[] =
    "usage: pbx COMMAND [OPTIONS] ...\n"
    "\n"
    "pbx is a switchboard for TCP: it answers calls and places them.\n"
    "\n"
    "Commands:\n"
    "  serve ADDRESS [HANDLER | -- PROGRAM ...]   listen and answer every caller\n"
    "  connect ADDRESS [-- PROGRAM ...]           call ADDRESS; relay stdin/stdout\n"
    "                                             or run PROGRAM on fds 6 and 7\n"
    "  bench ADDRESS                              place calls as fast as they\n"
    "                                             are answered; report rates\n"
    "\n"
    "  pbx COMMAND --help    the options of a command\n"
    "  pbx --version         the version\n"
    "\n"
    "Examples:\n"
    "  pbx serve 127.0.0.1:9234                  greet each caller (the paper)\n"
    "  pbx connect 127.0.0.1:9234                call it\n"
    "  pbx bench -d 5 127.0.0.1:9234             measure it\n"
    "  pbx serve :7 echo                         an echo service on every address\n"
    "  pbx serve 127.0.0.1:8000 -- cat           a program per connection\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error.\n";

int
cli_help(const char *text)
{
	fputs(text, stdout);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
}

int
cli_find_dashes(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0)
			return i;
	return argc;
}

int
cli_bad_value(const char *what, const char *value, const char *expected)
{
	log_error("bad %s '%s': %s", what, value, expected);
	return EXIT_USAGE;
}

/*
 * Started with fd 0, 1 or 2 closed, the first socket pbx opens would take
 * its place: a call's socket on fd 1 gets every reply echoed back into it,
 * a listener on fd 2 gets the log lines. Each closed one becomes
 * /dev/null first, before anything else opens. Returns 0 or -errno.
 */
static int
open_std_fds(void)
{
	for (int fd = 0; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		/* The lowest free fd, since every one below it is open. */
		int null = open("/dev/null", O_RDWR);
		if (null < 0)
			return -errno;
		if (null != fd) {
			dup2(null, fd);
			close(null);
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	const char *cmd = argc > 1 ? argv[1] : NULL;

	/* A reader that goes away (of stderr, stdout, a socket) is an error
	 * on that write, never the death of pbx. Programs pbx runs get it
	 * back at default (pbx_signals_ignored, sigdefault). */
	sigaction(SIGPIPE, &ign, NULL);
	int r = open_std_fds();
	log_init("", LOG_NORMAL, false, LOG_FORMAT_TEXT);
	if (r < 0) {
		log_error("open /dev/null: %s", pbx_strerror(r));
		return EXIT_RUNTIME;
	}
	if (cmd == NULL) {
		fputs(main_usage, stderr);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "serve") == 0)
		return cli_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "connect") == 0)
		return cli_connect(argc - 1, argv + 1);
	if (strcmp(cmd, "bench") == 0)
		return cli_bench(argc - 1, argv + 1);
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
	    strcmp(cmd, "help") == 0)
		return cli_help(main_usage);
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("pbx %s\n", PBX_VERSION);
		return EXIT_OK;
	}
	log_error("unknown command '%s' (see pbx --help)", cmd);
	return EXIT_USAGE;
}
