/*-------------------------------------------------------------------------
 * security.h
 *	  Who is calling the API, and whether a SQL handler may still run.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SECURITY_H
#define TASKER_SECURITY_H

#include "postgres.h"

extern void TaskerEnterHandler(Oid run_as);
extern void TaskerLeaveHandler(void);
extern void TaskerCheckHandler(Oid handler, Oid run_as, Oid registered_owner);

#endif							/* TASKER_SECURITY_H */
