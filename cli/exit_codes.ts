/** Exit codes every subcommand uses; documented in docs/OPERATIONS.md for cron and systemd. */
export const EXIT_OK = 0;
/** The operation failed (the node answered with an error, a check failed). */
export const EXIT_FAILED = 1;
/** Bad usage or configuration: fix the command line or config, retrying will not help. */
export const EXIT_USAGE = 2;
/** The node could not be reached. */
export const EXIT_UNREACHABLE = 3;
/** Another run holds the lock (backup). */
export const EXIT_LOCKED = 4;
