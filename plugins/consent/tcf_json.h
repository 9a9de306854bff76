/*
 * tcf_json.h — a decoded TC string as JSON, for `veil consent decode`.
 *
 * One compact object with the TCF spec's field names, in string order:
 * version, created, lastUpdated (ISO 8601 UTC; the decisecond shows as a
 * ".d" fraction only when it is not zero: "2020-03-24T17:43:29.3Z"), cmpId,
 * cmpVersion, consentScreen, consentLanguage, vendorListVersion,
 * tcfPolicyVersion, isServiceSpecific, useNonStandardTexts,
 * specialFeatureOptins, purposeConsents, purposeLegitimateInterests,
 * purposeOneTreatment, publisherCountryCode, vendorConsents,
 * vendorLegitimateInterests, publisherRestrictions (array of {"purposeId",
 * "restrictionType" (0 not allowed, 1 require consent, 2 require LI),
 * "vendorRanges"}), disclosedVendors, allowedVendors, publisherConsents,
 * publisherLegitimateInterests, numCustomPurposes, customPurposeConsents,
 * customPurposeLegitimateInterests.
 *
 * Every id set is a JSON array of numbers in ascending order, but for a
 * restriction's vendors: "vendorRanges" is an array of inclusive [first,
 * last] pairs, ascending, disjoint and merged ([[7,7],[20,30]]), as TC
 * strings encode them; one id each, a few bytes of string could name
 * 65,535 vendors thousands of times over. Every key is always present so
 * consumers see one shape: the keys of an absent optional segment
 * (disclosed, allowed, publisher TC) are null.
 */
#ifndef VEIL_CONSENT_TCF_JSON_H
#define VEIL_CONSENT_TCF_JSON_H

#include "tcf.h"

/** A malloc'd NUL-terminated JSON object (free() it), or NULL when t holds
 *  no decoded string (t->valid == 0) or memory runs out. */
char *veil_tcf_to_json(const struct veil_tcf *t);

#endif
