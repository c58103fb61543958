/** The release version, embedded so a compiled binary needs no file on disk. */
export const VERSION = "0.1.0";
