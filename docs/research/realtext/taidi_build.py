"""Build even-numbered message JSONL from TipDM 2020 C data.
Odd-numbered 留言编号 rows are dropped immediately after parsing; only their COUNT is kept."""
import json, re, os, collections, io, subprocess
import pandas as pd

MIRROR = {'Rollbear-bot/HelloNLP-TopicC-in-TipDMCup2020': '/work/.mirror/Rollbear-bot+HelloNLP-TopicC-in-TipDMCup2020/repo/.git',
          '694035434/Natural-language-processing-and-text-mining': '/work/.mirror/694035434+Natural-language-processing-and-text-mining/repo',
          'Introduction-to-AI-Course/ai_04': '/work/.mirror/Introduction-to-AI-Course+ai_04/repo'}
def blob(repo, path, commit):
    # read the xlsx straight from the fetched git snapshot into memory: raw files (which contain odd rows) are never written to disk
    return subprocess.run(['git', '--git-dir', MIRROR[repo], 'show', f'{commit}:{path}'], check=True, capture_output=True).stdout
OUT = os.environ.get('ANJU_REALTEXT_OUT', '/work/research/taidi')
RB = 'Rollbear-bot/HelloNLP-TopicC-in-TipDMCup2020'; RB_C = '505edf120966fe65039395e3a7f5fa9848359274'
NL = '694035434/Natural-language-processing-and-text-mining'; NL_C = 'b55669f6add2117eac7c924bb6652e215c4516eb'
AI = 'Introduction-to-AI-Course/ai_04'; AI_C = 'aa961ca8e00227296031cc8aaa4e76023693d4dd'

# (attachment, local file, source repo, path in repo, commit, kind) -- full files first so they win dedup
SOURCES = [
  ('附件3', 'rollbear/resources_full_dataset_full_dataset_sheet_3.xlsx', RB, 'resources/full_dataset/full_dataset_sheet_3.xlsx', RB_C, 'full'),
  ('附件4', 'rollbear/resources_full_dataset_full_dataset_sheet_4.xlsx', RB, 'resources/full_dataset/full_dataset_sheet_4.xlsx', RB_C, 'full'),
  ('附件2', 'rollbear/resources_xls_e2.xlsx', RB, 'resources/xls/e2.xlsx', RB_C, 'sample'),
  ('附件2', 'nlp694/附件2.xlsx', NL, '附件2.xlsx', NL_C, 'sample'),
  ('附件3', 'nlp694/附件3.xlsx', NL, '附件3.xlsx', NL_C, 'sample'),
  ('附件4', 'nlp694/附件4.xlsx', NL, '附件4.xlsx', NL_C, 'sample'),
  ('附件3', 'ai04/附件3.xlsx', AI, 'infile/附件3.xlsx', AI_C, 'full'),
  ('附件4', 'ai04/附件4.xlsx', AI, 'infile/附件4.xlsx', AI_C, 'full'),
]
WS = re.compile(r'\s+')  # includes \u3000, \xa0, \t, \n, \r
def norm(x):
    if x is None or (isinstance(x, float) and pd.isna(x)): return None
    s = str(x)
    return WS.sub(' ', s).strip()
def tstr(x):
    """Normalise mixed Excel datetime cells / 'YYYY/M/D H:MM:SS' strings to 'YYYY-MM-DD HH:MM:SS'."""
    if x is None or (isinstance(x, float) and pd.isna(x)) or x is pd.NaT: return None
    try:
        return pd.Timestamp(x if not isinstance(x, str) else x.strip()).strftime('%Y-%m-%d %H:%M:%S')
    except Exception:
        anom['unparsed_time'] += 1
        return norm(x)

anom = collections.Counter()
stats = []; records = {}; conflicts = collections.Counter(); dup_in_file = collections.Counter()
for att, f, repo, path, commit, kind in SOURCES:
    data = blob(repo, path, commit)
    df = pd.read_excel(io.BytesIO(data), sheet_name=0)
    n_total = len(df)
    ids = pd.to_numeric(df['留言编号'], errors='coerce')
    n_nonnum = int(ids.isna().sum())
    even_mask = (ids % 2 == 0)
    n_odd = int((ids % 2 == 1).sum())
    df = df[even_mask.fillna(False)].copy()   # ---- odd rows dropped here, never inspected ----
    df['留言编号'] = ids[even_mask.fillna(False)].astype(int)
    stats.append(dict(attachment=att, kind=kind, file=f, source=f'{repo}:{path}@{commit}', bytes=len(data),
                      total=n_total, even=len(df), odd=n_odd, nonnumeric_id=n_nonnum, columns=list(df.columns)))
    seen = set()
    for _, r in df.iterrows():
        rid = int(r['留言编号'])
        if rid in seen: dup_in_file[(att, f)] += 1; continue
        seen.add(rid)
        label = r.get('一级标签', r.get('一级分类'))
        rec = dict(id=rid, attachment=att, title=norm(r.get('留言主题')), text=norm(r.get('留言详情')),
                   label1=norm(label), time=tstr(r.get('留言时间')), reply=norm(r.get('答复意见')),
                   source=f'{repo}:{path}@{commit}')
        if '答复时间' in r: rec['reply_time'] = tstr(r.get('答复时间'))
        if '点赞数' in r: rec['likes'] = None if pd.isna(r['点赞数']) else int(r['点赞数'])
        if '反对数' in r: rec['dislikes'] = None if pd.isna(r['反对数']) else int(r['反对数'])
        if '留言用户' in r: rec['user'] = norm(r.get('留言用户'))
        key = (att, rid)
        if key in records:
            old = records[key]
            same = all(old.get(k) == rec.get(k) for k in ('title','text','time','reply'))
            if not same: conflicts[(att, f)] += 1
            old.setdefault('also_in', []).append(rec['source'])
            continue
        records[key] = rec

# anomalies on even rows only
for rec in records.values():
    for fld in ('title','text','reply'):
        v = rec.get(fld) or ''
        if re.search(r'&[a-zA-Z]+;|&#\d+;', v): anom[f'{fld}:html_entity'] += 1
        if re.search(r'<[a-zA-Z/][^>]{0,30}>', v): anom[f'{fld}:html_tag'] += 1
        if '\ufffd' in v: anom[f'{fld}:replacement_char'] += 1
    if not rec.get('text'): anom['empty_text'] += 1

recs = sorted(records.values(), key=lambda r: (r['attachment'], r['id']))
with open(os.path.join(OUT, 'even_messages.jsonl'), 'w', encoding='utf-8') as fh:
    for r in recs: fh.write(json.dumps(r, ensure_ascii=False) + '\n')
json.dump(dict(stats=stats, conflicts={f'{k[0]}|{k[1]}': v for k, v in conflicts.items()},
               dup_in_file={f'{k[0]}|{k[1]}': v for k, v in dup_in_file.items()}, anomalies=anom,
               per_attachment=collections.Counter(r['attachment'] for r in recs),
               label_dist=collections.Counter(r['label1'] for r in recs if r['attachment']=='附件2')),
          open(os.path.join(OUT, 'build_stats.json'), 'w'), ensure_ascii=False, indent=1)
print('written', len(recs))
