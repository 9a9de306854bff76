/*
 * dp_cmd.h — the plugin's subcommands: the privacy calculator.
 */
#ifndef VEIL_DP_MODEL_DP_CMD_H
#define VEIL_DP_MODEL_DP_CMD_H

#include <veil/veil.h>

extern const struct veil_command veil_dp_model_commands[];

#endif
