/*
 * ops.h — what the pipeline loop and the HTTP server tell each other besides
 * metrics: liveness (the loop turns), readiness (with the reason when not),
 * and reload requests with their outcomes.
 *
 * The loop writes, the HTTP thread reads; one mutex and a condition variable
 * (a POST /reload waits for the loop to report how the reload went).
 */
#ifndef VEIL_OPS_H
#define VEIL_OPS_H

#include <stddef.h>
#include <stdint.h>

struct veil_ops;

int veil_ops_new(struct veil_ops **out);
void veil_ops_destroy(struct veil_ops *o);

/** The loop turned. Before the first beat the loop counts as live (it is
 *  starting). */
void veil_ops_beat(struct veil_ops *o);
/** Readiness; `reason` (copied) says why not. */
void veil_ops_set_ready(struct veil_ops *o, int ready, const char *reason);

/** 1 when the loop turned within timeout_ms, else 0 with a message. */
int veil_ops_live(struct veil_ops *o, int timeout_ms, char *msg,
                  size_t msg_size);
/** 1 when ready, else 0 with the reason. Not ready either when the loop
 *  has not turned for VEIL_OPS_READY_STALE_MS (12 s: longer than one
 *  transactional call's 10 s timeout). */
int veil_ops_ready(struct veil_ops *o, char *msg, size_t msg_size);
#define VEIL_OPS_READY_STALE_MS 12000
/** For tests: another staleness bound. */
void veil_ops_set_ready_stale(struct veil_ops *o, int stale_ms);

/** Asks the loop for a reload; returns its ticket, to pass to
 *  veil_ops_wait_reload(). */
uint64_t veil_ops_request_reload(struct veil_ops *o);
/** For the loop: 1 when a reload was requested since the last call; the
 *  next veil_ops_reload_done() answers every request made before this
 *  call. */
int veil_ops_take_reload(struct veil_ops *o);
/** A reload's error, whole: room for the privacy lint's one line per
 *  problem (the loop builds it this long, and POST /reload answers with
 *  all of it). */
#define VEIL_OPS_MSG_MAX 8192
/** For the loop: the outcome of a reload attempt (msg: the error, up to
 *  VEIL_OPS_MSG_MAX bytes with its NUL). */
void veil_ops_reload_done(struct veil_ops *o, int ok, const char *msg);
/** Waits until a reload that covers `ticket` (one taken after the
 *  request) finishes: 1 when it succeeded, 0 when it failed (msg: why), -1
 *  after timeout_ms, -2 once veil_ops_close() was called. */
int veil_ops_wait_reload(struct veil_ops *o, uint64_t ticket,
                         int timeout_ms, char *msg, size_t msg_size);
/** Ends every wait for a reload (the server is stopping: nothing will
 *  report one any more, and a waiting request would hold up the exit). */
void veil_ops_close(struct veil_ops *o);

#endif
