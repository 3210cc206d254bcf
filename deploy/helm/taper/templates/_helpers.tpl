{{/* Names and labels. A service's resources are "<release>-<service-kebab>". */}}
{{- define "taper.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "taper.kebab" -}}
{{- . | replace "_" "-" -}}
{{- end -}}

{{/* (list $ "scheduler") -> the service's resource name */}}
{{- define "taper.serviceName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "taper.fullname" $root) (include "taper.kebab" (index . 1)) -}}
{{- end -}}

{{/* (list $ "scheduler") -> host:port of its Service, for the gateway's upstreams */}}
{{- define "taper.upstream" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 1 -}}
{{- printf "%s:%v" (include "taper.serviceName" .) (index $root.Values.services $svc).port -}}
{{- end -}}

{{- define "taper.labels" -}}
app.kubernetes.io/name: taper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taper
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* (list $ "scheduler") */}}
{{- define "taper.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: taper
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ include "taper.kebab" (index . 1) }}
{{- end -}}

{{- define "taper.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/*
The environment of a service's pods and of its migration Job: (list $ "scheduler"). Every name is a
setting of services/chassis/settings.py or services/<service>/settings.py (a test checks it);
every secret is a secretKeyRef.
*/}}
{{- define "taper.env" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 1 -}}
{{- $v := $root.Values -}}
{{- $prefix := upper $svc -}}
{{- $user := index $v.kafka.users $svc -}}
{{- $db := index $v.database.secrets $svc -}}
- name: TAPER_ENV
  value: {{ $v.environment | quote }}
- name: {{ $prefix }}_HTTP_HOST
  value: "0.0.0.0"
- name: {{ $prefix }}_HTTP_PORT
  value: {{ (index $v.services $svc).port | quote }}
- name: TAPER_FORWARDED_ALLOW_IPS
  value: {{ $v.forwardedAllowIps | quote }}
- name: TAPER_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: {{ $prefix }}_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $db.name }}, key: {{ $db.key }}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: KAFKA_PROVISION_TOPICS
  value: {{ $v.kafka.provisionTopics | quote }}
- name: KAFKA_REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: KAFKA_MIN_INSYNC_REPLICAS
  value: {{ $v.kafka.minInsyncReplicas | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $user.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $user.secretName }}, key: {{ $user.passwordKey }}}
- name: KAFKA_SSL_CAFILE
  value: /etc/taper/kafka-ca/{{ $v.kafka.caSecret.key }}
- name: TAPER_JWT_JWKS_URL
  value: {{ $v.auth.jwksUrl | quote }}
- name: TAPER_JWT_ISSUER
  value: {{ $v.auth.issuer | quote }}
- name: TAPER_JWT_AUDIENCE
  value: {{ $v.auth.audience | quote }}
- name: TAPER_JWT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $v.auth.jwtSecret.name }}, key: {{ $v.auth.jwtSecret.key }}}
{{- with $v.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if eq $svc "notifications" }}
{{- $n := $v.notifications }}
- name: NOTIFICATIONS_PUBLIC_BASE_URL
  value: {{ $n.publicBaseUrl | quote }}
- name: NOTIFICATIONS_PAGE_WEBHOOK_URL
  value: {{ $n.pageWebhookUrl | quote }}
- name: NOTIFICATIONS_SMS_BASE_URL
  value: {{ $n.smsBaseUrl | quote }}
- name: NOTIFICATIONS_SMTP_HOST
  value: {{ $n.smtpHost | quote }}
- name: NOTIFICATIONS_SMTP_PORT
  value: {{ $n.smtpPort | quote }}
- name: NOTIFICATIONS_SMTP_START_TLS
  value: {{ $n.smtpStartTls | quote }}
- name: NOTIFICATIONS_SMTP_SENDER
  value: {{ $n.smtpSender | quote }}
- name: NOTIFICATIONS_ACK_LINK_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $n.ackLinkSecret.name }}, key: {{ $n.ackLinkSecret.key }}}
{{- range $field, $key := dict "PAGE_ROUTING_KEY" "page-routing-key" "SMS_ACCOUNT_SID" "sms-account-sid" "SMS_AUTH_TOKEN" "sms-auth-token" "SMS_FROM_NUMBER" "sms-from-number" "SMTP_USERNAME" "smtp-username" "SMTP_PASSWORD" "smtp-password" }}
- name: NOTIFICATIONS_{{ $field }}
  valueFrom:
    secretKeyRef: {name: {{ $n.providersSecret }}, key: {{ $key }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* The pod's security context and the container's: non-root (the image's uid), read-only root. */}}
{{- define "taper.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "taper.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "taper.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.caSecret.name }}}
{{- end -}}

{{- define "taper.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: kafka-ca, mountPath: /etc/taper/kafka-ca, readOnly: true}
{{- end -}}
