/*
 * decode_cmd.h — the consent plugin's `decode` command.
 */
#ifndef VEIL_CONSENT_DECODE_CMD_H
#define VEIL_CONSENT_DECODE_CMD_H

/** `veil consent decode TC_STRING`: argv[0] is "decode". Exit code 0, 1
 *  (out of memory) or 2 (usage, invalid string). */
int veil_consent_decode_run(int argc, char **argv);

#endif
