"""Backup schedules and retention, the domain side: when a schedule fires (cron in a time zone
or a rate), what one tick of the dispatcher decides for a due schedule, and which backups a
retention policy lets go. No service is called here: stores and launchers come in as
parameters (docs/backups.md, "Schedules and retention")."""
