-- One database per service: no service reads another's tables. (Each service's `migrate`
-- also creates its database when missing; this makes the ownership visible from the start.)
CREATE DATABASE auth;
CREATE DATABASE recipes;
CREATE DATABASE notifier;
CREATE DATABASE media;
CREATE DATABASE backup;
