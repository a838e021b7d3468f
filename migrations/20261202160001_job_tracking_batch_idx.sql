-- Batched tracking (issue 13 item 4) claims the due tracking jobs of one
-- project at a time, oldest first: snapshot jobs of servers and volumes, whose
-- artefacts Glance and Cinder list many at once.
create index job_tracking_batch_idx on job (project_id, not_before)
    where status = 'tracking' and kind = 'snapshot' and resource_type in ('server', 'volume');
