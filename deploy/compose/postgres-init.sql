-- One database per service (each owns its data; docs/deploy.md "Backup and restore").
CREATE DATABASE scheduler;
CREATE DATABASE monitoring;
CREATE DATABASE notifications;
CREATE DATABASE group_matching;
