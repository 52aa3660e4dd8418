// One readable line per task event. The result is plain text for textContent.

const MAX = 500;

function cut(s, n = MAX) {
  s = String(s ?? '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function json(v) {
  try { return JSON.stringify(v); } catch { return String(v); }
}

function contentText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((c) => {
    if (!c || typeof c !== 'object') return '';
    if (c.type === 'text') return String(c.text ?? '');
    if (c.type === 'tool_use') return '→ ' + (c.name ?? 'tool') + ' ' + json(c.input ?? {});
    if (c.type === 'tool_result') return '← ' + contentText(c.content);
    return c.type ? '[' + c.type + ']' : '';
  }).filter(Boolean).join(' ');
}

/** A one-line description of a task event (without its seq and time). */
export function describe(e) {
  switch (e.type) {
    case 'task_created': return 'created: ' + cut(e.objective, 200);
    case 'agent_spawn': return `agent ${e.agentId ?? '?'} spawned` + (e.agentType ? ` (${e.agentType})` : '') + (e.name ? ` ${e.name}` : '');
    case 'task_progress': return `${e.progress ?? '?'}%` + (e.message ? ' ' + cut(e.message) : '');
    case 'assistant':
    case 'user': return cut((e.agentId ? e.agentId + ': ' : '') + contentText(e.message && e.message.content));
    case 'system': return cut(`${e.subtype ?? 'system'}` + (e.model ? ` model ${e.model}` : '') + (e.message ? ': ' + e.message : ''));
    case 'result': return cut(`result (${e.subtype ?? (e.is_error ? 'error' : 'ok')}): ${e.result ?? ''}`);
    case 'task_output': return cut(e.line) + (e.truncated ? ' [truncated]' : '');
    case 'task_log': return cut(`[${e.level ?? 'log'}] ${e.message ?? ''}`) + (e.truncated ? ' [truncated]' : '');
    case 'engine_event': return cut('engine event ' + json(e.event));
    case 'task_cancelled': return 'cancel requested';
    case 'task_complete': return `${e.status} (exit ${e.exitCode}, ${e.durationMs ?? '?'} ms)` + (e.error ? ': ' + cut(e.error, 300) : '');
    default: {
      const { type, taskId, seq, serverTime, ...rest } = e;
      return cut(json(rest));
    }
  }
}
