/**
 * The embedded evaluation suite: held-out tasks in the clip_benchmark webdataset layout (facts §6), listed in
 * a tasklist.yml like DataComp's. Each task holds out a whole art style (and every package that copies it).
 */
import { containsPhrase } from './schema.ts';

export type TaskKind = 'zeroshot_classification' | 'retrieval';

export interface TaskDef {
  /** Folder name and key in tasklist.yml. */
  key: string;
  name: string;
  kind: TaskKind;
  main_metric: 'acc1' | 'mean_per_class_recall' | 'mean_recall@1';
  /** The held-out style the images come from. */
  style: string;
  templates: string[];
  tags: string[];
}

export const TASKS: readonly TaskDef[] = [
  {
    key: 'emoji_group', name: 'Emoji group (Noto)', kind: 'zeroshot_classification', main_metric: 'acc1', style: 'Noto Color Emoji',
    templates: ['{c}.', 'an emoji from {c}.', 'a {c} emoji.', 'an emoji in the {c} category.'], tags: ['embedded', 'emoji'],
  },
  {
    key: 'emoji_subgroup', name: 'Emoji subgroup (Noto)', kind: 'zeroshot_classification', main_metric: 'mean_per_class_recall', style: 'Noto Color Emoji',
    templates: ['{c}.', 'an emoji of {c}.', 'a {c} emoji.', 'an emoji in the {c} subgroup.'], tags: ['embedded', 'emoji'],
  },
  {
    key: 'flag_country', name: 'Flag to country (Circle Flags)', kind: 'zeroshot_classification', main_metric: 'acc1', style: 'Circle Flags',
    templates: ['the flag of {c}.', 'a flag of {c}.', '{c} flag.', 'the national flag of {c}.'], tags: ['embedded', 'flags'],
  },
  {
    key: 'icon_category', name: 'Icon category (Material Design Icons)', kind: 'zeroshot_classification', main_metric: 'mean_per_class_recall', style: 'Material Design Icons',
    templates: ['a {c} icon.', 'an icon about {c}.', '{c} symbol.', 'a pictogram of {c}.'], tags: ['embedded', 'icons'],
  },
  {
    key: 'emoji_retrieval', name: 'Emoji ↔ name retrieval (Noto)', kind: 'retrieval', main_metric: 'mean_recall@1', style: 'Noto Color Emoji',
    templates: [], tags: ['embedded', 'retrieval'],
  },
];

/**
 * Emoji subgroup names, where emojibase's English message alone is not a name (with tongue → faces with
 * tongue) or repeats a group name (activities). The pool's captions use the same names, so the task can
 * be learned from the pool, as ImageNet class names are from web alt-text.
 */
export const SUBGROUP_NAMES: Record<string, string> = {
  'face-smiling': 'smiling faces', 'face-affection': 'affectionate faces', 'face-tongue': 'faces with tongue',
  'face-hand': 'faces with hands', 'face-neutral-skeptical': 'neutral faces', 'face-sleepy': 'sleepy faces',
  'face-unwell': 'unwell faces', 'face-hat': 'faces with hats', 'face-glasses': 'faces with glasses',
  'face-concerned': 'concerned faces', 'face-negative': 'negative faces', 'face-costume': 'costumed faces',
  'person-activity': 'people activities', 'hand-fingers-open': 'open hands', 'hand-fingers-closed': 'closed hands',
  'hand-fingers-partial': 'hand signs', 'hand-single-finger': 'pointing fingers', 'person': 'men & women', 'geometric': 'shapes & colors',
};

/** Emoji groups of the group task (emojibase keys); components and flags are left out. */
export const EMOJI_GROUP_KEYS = ['smileys-emotion', 'people-body', 'animals-nature', 'food-drink', 'travel-places', 'activities', 'objects', 'symbols'];

/**
 * MDI tag → class name of the icon-category task: the plain word for the tag that web captions use (and
 * the pool's captions do: icon names, set categories). Tags whose name is a generic word of the pool
 * ("Emoji", "Brand / Logo", "Vector"), that have fewer than 8 single-tag icons, or whose name no pool
 * caption uses ("Holiday", "Tooltip") are left out (null).
 */
export const MDI_CLASS_NAMES: Record<string, string | null> = {
  'Account / User': 'user', 'Agriculture': 'farm', 'Alert / Error': 'alert', 'Alpha / Numeric': 'letter',
  'Animal': 'animal', 'Arrange': null, 'Arrow': 'arrow', 'Audio': 'audio', 'Automotive': 'car', 'Banking': 'bank',
  'Battery': 'battery', 'Brand / Logo': null, 'Cellphone / Phone': 'phone', 'Clothing': 'clothing', 'Cloud': 'cloud',
  'Color': null, 'Currency': null, 'Database': 'database', 'Date / Time': 'calendar', 'Developer / Languages': 'code',
  'Device / Tech': 'device', 'Drawing / Art': 'paint', 'Edit / Modify': 'edit', 'Emoji': null, 'Files / Folders': 'folder',
  'Food / Drink': 'food', 'Form': 'checkbox', 'Gaming / RPG': 'game', 'Geographic Information System': 'map',
  'Hardware / Tools': 'tools', 'Health / Beauty': null, 'Holiday': null, 'Home Automation': 'home', 'Lock': 'lock',
  'Math': 'math', 'Medical / Hospital': 'medical', 'Music': 'music', 'Nature': 'nature', 'Navigation': 'navigation',
  'Notification': 'notification', 'People / Family': 'family', 'Photography': 'camera', 'Places': 'places',
  'Printer': 'printer', 'Religion': 'religion', 'Science': 'science', 'Settings': 'settings', 'Shape': 'shape',
  'Shopping': 'shopping', 'Social Media': null, 'Sport': 'sport', 'Text / Content / Format': 'text', 'Tooltip': null,
  'Transportation + Flying': 'airplane', 'Transportation + Other': 'transportation', 'Transportation + Road': 'road',
  'Transportation + Water': null, 'Vector': null, 'Video / Movie': 'video', 'View': 'view', 'Weather': 'weather',
};

/** Words so common in the pool's captions that a class named by them would be decided by that word alone. */
export const GENERIC_WORDS = ['emoji', 'icon', 'logo', 'flag', 'symbol', 'image', 'sticker', 'vector'];

/** tasklist.yml in DataComp's layout (one mapping per task: name, size, main_metric, num_classes, random_score, tags). */
export function tasklistYaml(tasks: readonly { def: TaskDef; size: number; numClasses?: number; randomScore?: number }[]): string {
  const lines = ['---', '', '# The embedded evaluation suite of DataComp Workbench (held-out art styles; not comparable with the leaderboard)', ''];
  for (const { def, size, numClasses, randomScore } of tasks) {
    lines.push(`# ${def.name}`, `${def.key}:`, `  name: ${def.name}`, `  size: ${size}`, `  main_metric: ${def.main_metric}`);
    if (numClasses !== undefined) lines.push(`  num_classes: ${numClasses}`);
    if (randomScore !== undefined) lines.push(`  random_score: ${randomScore.toFixed(6)}`);
    lines.push(`  held_out_style: ${def.style}`, '  tags:', ...def.tags.map((t) => `    - ${t}`), '');
  }
  lines.push('...', '');
  return lines.join('\n');
}

export interface ClassOccurrence {
  classname: string;
  /** Pool captions that contain the class name as a whole word (case-insensitive). */
  captions: number;
}

const WORD = /[\p{L}\p{N}]+/gu;

/** An index of pool captions by word, to count whole-phrase occurrences fast. */
export class CaptionIndex {
  private readonly postings = new Map<string, number[]>();
  constructor(readonly captions: readonly string[]) {
    captions.forEach((c, i) => {
      for (const w of new Set(c.toLowerCase().match(WORD) ?? [])) {
        const list = this.postings.get(w);
        if (list) list.push(i);
        else this.postings.set(w, [i]);
      }
    });
  }

  /** Captions that contain `phrase` as whole words (case-insensitive). */
  count(phrase: string): number {
    return this.matches(phrase).length;
  }

  /** Indices of the captions that contain `phrase`. */
  matches(phrase: string): number[] {
    const words = phrase.toLowerCase().match(WORD) ?? [];
    if (!words.length) return [];
    let rarest: number[] | undefined;
    for (const w of words) {
      const list = this.postings.get(w) ?? [];
      if (!rarest || list.length < rarest.length) rarest = list;
    }
    return rarest!.filter((i) => containsPhrase(this.captions[i]!, phrase));
  }

  /** Captions that contain the word. */
  wordCount(word: string): number {
    return this.postings.get(word.toLowerCase())?.length ?? 0;
  }
}

/** How often each class name (or retrieval text) occurs in the pool's captions. */
export function classOccurrence(classnames: readonly string[], index: CaptionIndex): ClassOccurrence[] {
  return classnames.map((classname) => ({ classname, captions: index.count(classname) }));
}
