/*
 * privacy_lint.h — the check behind the promise "identifiers never leave":
 * no field an output's schema marks "pii" reaches that output in the clear.
 *
 * The lint follows the plugin chain. For every bound output with a schema
 * and every stage that declares that output (it may emit there), each field
 * the schema marks must have been treated by that stage or an earlier one,
 * as the stages declare through their lint hooks (veil_lint_field):
 *
 *   "pii": "identifier"  pseudonymized or dropped
 *   "pii": "quasi"       pseudonymized, generalized, dropped, or kept with a
 *                        reason
 *
 * An output field veil_out_event fills from the event (by path, whatever
 * the output schema marks) also carries the input schema's mark of that
 * field; where both mark it, the stricter holds. Only the stages that
 * declare an output may write to it: the host refuses any other
 * (pipeline.c, undeclared()), so checking the declaring stages is enough.
 *
 * A declaration of a record ("context") covers the fields under it. The
 * dead-letter output carries the original bytes by design (an operator's
 * topic) and has no schema, so it is not checked.
 *
 * It also fails a stage that declares a field it cannot treat as
 * configured (VEIL_FIELD_INVALID) and a pipeline that pseudonymizes without
 * a keys: section. Runs in `veil lint`, `veil run` and `veil demo` alike.
 */
#ifndef VEIL_PRIVACY_LINT_H
#define VEIL_PRIVACY_LINT_H

#include <stddef.h>

struct veil_pipeline;

/** 0, or -VEIL_EINVAL with one line per problem in errstr
 *  ("FILE:LINE:COL: field 'context.ip' (pii: quasi) can reach output
 *  'events' (topic t) in the clear: …; <the fix>"). `has_keys`: the
 *  pipeline has a keyring. */
int veil_privacy_lint_check(struct veil_pipeline *p, int has_keys,
                            char *errstr, size_t errstr_size);

#endif
