-- A deletion waiting out the pause after a failed attempt sends nothing and
-- loads nothing: it does not count against the in-flight limits meanwhile.
alter table snapshot add column delete_backing_off boolean not null default false;
